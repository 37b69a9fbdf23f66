from django.urls import path

from . import calibration_views, views

app_name = "guardrails"

urlpatterns = [
    path("coverage/", views.coverage, name="coverage"),
    path("simulate/", views.simulate_page, name="simulate"),
    path("calibration/", calibration_views.calibration_page, name="calibration"),
    path("calibration/draft/", calibration_views.calibration_draft, name="calibration_draft"),
]
