from django.urls import path

from . import views

app_name = "catalog"

urlpatterns = [
    path("imports/", views.import_job_list, name="import_list"),
    path("imports/<uuid:job_id>/", views.import_job_page, name="import_job"),
    path("imports/<uuid:job_id>/progress/", views.import_job_progress, name="import_progress"),
    path("imports/<uuid:job_id>/errors.csv", views.import_job_errors_csv, name="import_errors"),
]
