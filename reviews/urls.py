from django.urls import path

from . import views

app_name = "reviews"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("items/<int:item_id>/", views.item_detail, name="item"),
    path("items/<int:item_id>/accept/", views.item_accept, name="accept"),
    path("items/<int:item_id>/reject/", views.item_reject, name="reject"),
    path("items/<int:item_id>/revise/", views.item_revise, name="revise"),
    path("items/<int:item_id>/claim/", views.item_claim, name="claim"),
    path("items/<int:item_id>/release/", views.item_release, name="release"),
    # After the items/ paths, so "items" is never taken for a queue kind.
    path("<slug:kind>/", views.queue_kind, name="queue_kind"),
]
