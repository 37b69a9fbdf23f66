"""Pages of versions and canaries, under /rollouts/."""

from django.urls import path

from . import rollout_views

app_name = "rollouts"

urlpatterns = [
    path("", rollout_views.rollout_list, name="list"),
    path("canaries/<int:canary_id>/", rollout_views.canary_detail, name="canary"),
    path("canaries/<int:canary_id>/share/", rollout_views.canary_share, name="share"),
    path("canaries/<int:canary_id>/pause/", rollout_views.canary_pause, name="pause"),
    path("canaries/<int:canary_id>/resume/", rollout_views.canary_resume, name="resume"),
    path("canaries/<int:canary_id>/stop/", rollout_views.canary_stop, name="stop"),
    path("canaries/<int:canary_id>/promote/", rollout_views.canary_promote, name="promote"),
    path("versions/<int:version_id>/", rollout_views.version_detail, name="version"),
]
