from django.urls import path

from . import webhooks

app_name = "webhooks"

urlpatterns = [
    path("shopify/<slug:channel_code>/", webhooks.shopify_webhook, name="shopify"),
]
