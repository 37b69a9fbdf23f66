"""REST endpoints of error labels and the label taxonomy, under /api/v1/."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
