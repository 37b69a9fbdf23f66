from django.urls import path

from . import views

app_name = "guardrails"

urlpatterns = [
    path("coverage/", views.coverage, name="coverage"),
    path("simulate/", views.simulate_page, name="simulate"),
]
