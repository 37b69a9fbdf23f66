"""The weekly review and the fixes backlog, under /feedback/."""

from django.urls import path  # noqa: F401

app_name = "feedback"

urlpatterns: list = []
