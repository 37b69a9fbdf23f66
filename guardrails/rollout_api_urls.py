"""REST endpoints of versions and canaries, under /api/v1/."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
