from django.urls import path

from . import dashboard_views

app_name = "dashboard"

urlpatterns = [
    path("", dashboard_views.index, name="index"),
    path("kpi/<slug:slug>/", dashboard_views.kpi_detail, name="kpi"),
]
