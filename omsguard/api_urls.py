from django.urls import include, path
from rest_framework.routers import DefaultRouter

from guardrails.api import DecisionViewSet
from guardrails.breakers_api import BreakerViewSet
from guardrails.recommenders.api import CarrierRecommendationView, ShortageView
from inventory.api import DiscrepancyViewSet, StockEventViewSet, StockLevelViewSet
from orders.api import DeliveryViewSet, MarketplaceOrderIngestView, OrderViewSet
from orders.fulfilment_api import (
    ChargebackViewSet,
    FulfilmentExceptionViewSet,
    OrderReturnViewSet,
    ShipmentViewSet,
)
from reviews.api import ReviewItemViewSet

router = DefaultRouter()
router.register("orders", OrderViewSet, basename="order")
router.register("deliveries", DeliveryViewSet, basename="delivery")
router.register("review-items", ReviewItemViewSet, basename="review-item")
router.register("stock-events", StockEventViewSet, basename="stock-event")
router.register("stock-levels", StockLevelViewSet, basename="stock-level")
router.register("inventory-discrepancies", DiscrepancyViewSet, basename="inventory-discrepancy")
router.register("breakers", BreakerViewSet, basename="breaker")
router.register("decisions", DecisionViewSet, basename="decision")
router.register("shipments", ShipmentViewSet, basename="shipment")
router.register(
    "fulfilment-exceptions", FulfilmentExceptionViewSet, basename="fulfilment-exception"
)
router.register("returns", OrderReturnViewSet, basename="return")
router.register("chargebacks", ChargebackViewSet, basename="chargeback")

urlpatterns = [
    path(
        "channels/<slug:channel_code>/marketplace-orders/",
        MarketplaceOrderIngestView.as_view(),
        name="marketplace-orders",
    ),
    path("orders/<int:order_id>/shortages/", ShortageView.as_view(), name="order-shortages"),
    path(
        "orders/<int:order_id>/carrier-recommendation/",
        CarrierRecommendationView.as_view(),
        name="order-carrier-recommendation",
    ),
    path("", include("guardrails.rollout_api_urls")),
    path("", include("reviews.label_api_urls")),
    *router.urls,
]
