"""REST endpoints of versions and canaries, under /api/v1/."""

from rest_framework.routers import SimpleRouter

from .rollout_api import CanaryViewSet, VersionViewSet

router = SimpleRouter()
router.register("versions", VersionViewSet, basename="version")
router.register("canaries", CanaryViewSet, basename="canary")

urlpatterns = router.urls
