"""Pages of versions and canaries, under /rollouts/."""

from django.urls import path  # noqa: F401

app_name = "rollouts"

urlpatterns: list = []
