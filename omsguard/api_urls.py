from rest_framework.routers import DefaultRouter

from orders.api import OrderViewSet
from reviews.api import ReviewItemViewSet

router = DefaultRouter()
router.register("orders", OrderViewSet, basename="order")
router.register("review-items", ReviewItemViewSet, basename="review-item")

urlpatterns = router.urls
