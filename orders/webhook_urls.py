from django.urls import path

from . import channel_webhooks, webhooks

app_name = "webhooks"

urlpatterns = [
    path("shopify/<slug:channel_code>/", webhooks.shopify_webhook, name="shopify"),
    path(
        "woocommerce/<slug:channel_code>/",
        channel_webhooks.woocommerce_webhook,
        name="woocommerce",
    ),
    path("square/<slug:channel_code>/", channel_webhooks.square_webhook, name="square"),
]
