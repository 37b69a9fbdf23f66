from django.contrib import admin

from .carriers import carrier_mapping_delete, carrier_mapping_save
from .models import (
    Carrier,
    CarrierCodeMapping,
    CarrierService,
    Delivery,
    Order,
    OrderEvent,
    OrderLine,
)


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
    list_display = [
        "delivery_id",
        "channel",
        "topic",
        "outcome",
        "error",
        "received_at",
        "processed_at",
    ]
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
    list_display = [
        "__str__",
        "channel",
        "status",
        "total",
        "currency",
        "carrier_service",
        "address_score",
        "created_at",
    ]
    list_filter = ["status", "channel", "carrier_service__carrier"]
    search_fields = ["channel_order_id", "order_number", "customer_email"]
    list_select_related = ["channel", "carrier_service"]
    raw_id_fields = ["delivery"]
    inlines = [OrderLineInline, OrderEventInline]


class CarrierServiceInline(admin.TabularInline):
    model = CarrierService
    fields = ["code", "name", "service_level"]
    extra = 0


@admin.register(Carrier)
class CarrierAdmin(admin.ModelAdmin):
    list_display = ["name", "code"]
    search_fields = ["name", "code"]
    inlines = [CarrierServiceInline]


@admin.register(CarrierService)
class CarrierServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "carrier", "code", "service_level"]
    list_filter = ["service_level", "carrier"]
    search_fields = ["name", "code", "carrier__name"]
    list_select_related = ["carrier"]


@admin.register(CarrierCodeMapping)
class CarrierCodeMappingAdmin(admin.ModelAdmin):
    """Channel codes for carrier services; saving one settles the orders held for its code."""

    list_display = ["code", "channel_or_any", "destination_country", "service", "updated_at"]
    list_filter = ["channel", "destination_country", "service__carrier"]
    search_fields = ["code", "normalized_code", "service__name"]
    list_select_related = ["channel", "service"]
    autocomplete_fields = ["service"]
    fields = ["channel", "code", "destination_country", "service", "normalized_code"]
    readonly_fields = ["normalized_code"]

    @admin.display(description="Channel", ordering="channel__code")
    def channel_or_any(self, obj: CarrierCodeMapping) -> str:
        return obj.channel.code if obj.channel_id else "(any channel)"

    def save_model(self, request, obj, form, change) -> None:
        resolved = carrier_mapping_save(
            mapping=obj, actor=request.user, reason="Saved in the admin"
        )
        if resolved:
            self.message_user(
                request,
                f"This mapping settled {len(resolved)} review item(s) waiting on the code.",
            )

    def delete_model(self, request, obj) -> None:
        carrier_mapping_delete(mapping=obj, actor=request.user, reason="Deleted in the admin")

    def delete_queryset(self, request, queryset) -> None:
        for mapping in queryset.select_related("channel", "service"):
            carrier_mapping_delete(
                mapping=mapping, actor=request.user, reason="Deleted in the admin"
            )
