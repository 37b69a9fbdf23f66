"""Error labelling pages and forms, under /labels/."""

from django.urls import path  # noqa: F401

app_name = "labels"

urlpatterns: list = []
