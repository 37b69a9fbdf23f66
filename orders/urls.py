from django.urls import path

from . import views

app_name = "orders"

urlpatterns = [
    path("<int:order_id>/", views.order_detail, name="detail"),
    path("<int:order_id>/history/", views.order_history, name="history"),
    path("<int:order_id>/history.json", views.order_history_json, name="history-json"),
    path("<int:order_id>/history.csv", views.order_history_csv, name="history-csv"),
    path(
        "<int:order_id>/history/decisions/<int:decision_id>/revert/",
        views.order_history_revert,
        name="history-revert",
    ),
    path("history/export/", views.order_history_export, name="history-export"),
]
