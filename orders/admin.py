from django.contrib import admin

from .models import Delivery, Order, OrderEvent, OrderLine


class ReadOnlyAdminMixin:
    """Inbound data is evidence: visible in the admin, never edited there."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["delivery_id", "channel", "topic", "outcome", "received_at", "processed_at"]
    list_filter = ["outcome", "channel", "topic"]
    search_fields = ["delivery_id", "event_id"]
    list_select_related = ["channel"]
    exclude = ["body"]
    readonly_fields = ["body_text"]

    @admin.display(description="Body as received")
    def body_text(self, obj: Delivery) -> str:
        return bytes(obj.body).decode("utf-8", errors="replace")


class OrderLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderLine
    fields = ["position", "title", "channel_sku", "sku", "quantity", "unit_price"]
    extra = 0


class OrderEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderEvent
    fields = ["created_at", "kind", "message", "actor_kind", "actor"]
    readonly_fields = ["created_at"]
    extra = 0


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "channel", "status", "total", "currency", "created_at"]
    list_filter = ["status", "channel"]
    search_fields = ["channel_order_id", "order_number", "customer_email"]
    list_select_related = ["channel"]
    raw_id_fields = ["delivery"]
    inlines = [OrderLineInline, OrderEventInline]
