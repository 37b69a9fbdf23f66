"""Error labelling pages and forms, under /labels/."""

from django.urls import path

from . import label_views

app_name = "labels"

urlpatterns = [
    path("items/<int:item_id>/", label_views.item_labels, name="item"),
    path("items/<int:item_id>/add/", label_views.item_label_add, name="item_add"),
    path("orders/<int:order_id>/decisions/", label_views.order_decisions, name="order_decisions"),
    path("decisions/<int:decision_id>/add/", label_views.decision_label_add, name="decision_add"),
    path("export.jsonl", label_views.export_jsonl, name="export"),
]
