"""REST endpoints of error labels and the label taxonomy, under /api/v1/."""

from rest_framework.routers import SimpleRouter

from .label_api import ErrorLabelViewSet, LabelTermViewSet

router = SimpleRouter()
router.register("label-terms", LabelTermViewSet, basename="label-term")
router.register("error-labels", ErrorLabelViewSet, basename="error-label")

urlpatterns = router.urls
