"""Public pages customers reach from their address confirmation email (no login)."""

from django.urls import path

from . import confirm_views

app_name = "confirm"

urlpatterns = [
    path("address/<str:token>/", confirm_views.address_confirm, name="address"),
]
