from django.urls import path

from . import views

app_name = "reviews"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("items/<int:item_id>/accept/", views.item_accept, name="accept"),
    path("items/<int:item_id>/reject/", views.item_reject, name="reject"),
]
