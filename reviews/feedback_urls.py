"""The weekly review and the fixes backlog, under /feedback/."""

from django.urls import path

from . import feedback_views

app_name = "feedback"

urlpatterns = [
    path("weekly/", feedback_views.weekly_review_page, name="weekly"),
    path("weekly.csv", feedback_views.weekly_review_csv, name="weekly-csv"),
    path("fixes/", feedback_views.fix_list, name="fixes"),
    path("fixes/create/", feedback_views.fix_create, name="fix-create"),
    path("fixes/<int:fix_id>/update/", feedback_views.fix_update, name="fix-update"),
]
