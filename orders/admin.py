from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from guardrails.recommenders.rates import (
    validate_rate_country,
    validate_rate_currency,
    validate_rate_weight,
)
from omsguard.money import money_format

from .carriers import carrier_mapping_delete, carrier_mapping_save
from .models import (
    Carrier,
    CarrierCodeMapping,
    CarrierRate,
    CarrierRateStatus,
    CarrierService,
    ChannelApiGrant,
    Chargeback,
    Delivery,
    FulfilmentException,
    IdempotencyKey,
    Order,
    OrderEvent,
    OrderLine,
    OrderReturn,
    PriorityCustomer,
    Shipment,
)
from .services import REPLAYABLE_OUTCOMES, DeliveryNotReplayable, delivery_replay

REPLAY_PERMISSION = "orders.change_delivery"


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
    show_full_result_count = False
    exclude = ["body"]
    readonly_fields = ["body_text"]
    actions = ["replay_deliveries"]
    change_form_template = "admin/orders/delivery/change_form.html"

    @admin.display(description="Body as received")
    def body_text(self, obj: Delivery) -> str:
        return bytes(obj.body).decode("utf-8", errors="replace")

    def has_replay_permission(self, request) -> bool:
        return request.user.has_perm(REPLAY_PERMISSION)

    @admin.action(
        description="Replay the selected dead-lettered or failed deliveries", permissions=["replay"]
    )
    def replay_deliveries(self, request, queryset) -> None:
        replayed = 0
        for delivery in queryset.filter(outcome__in=REPLAYABLE_OUTCOMES).order_by("pk"):
            delivery_replay(
                delivery_id=delivery.pk, actor=request.user, reason="Replayed in the admin"
            )
            replayed += 1
        skipped = queryset.count() - replayed
        self.message_user(request, f"Queued {replayed} delivery(ies) again.")
        if skipped:
            self.message_user(
                request,
                f"Skipped {skipped} delivery(ies) that are neither dead-lettered nor failed.",
                level=messages.WARNING,
            )

    def get_urls(self):
        replay = path(
            "<int:delivery_pk>/replay/",
            self.admin_site.admin_view(self.replay_view),
            name="orders_delivery_replay",
        )
        return [replay, *super().get_urls()]

    def replay_view(self, request, delivery_pk: int):
        change_url = reverse("admin:orders_delivery_change", args=[delivery_pk])
        if request.method != "POST" or not self.has_replay_permission(request):
            self.message_user(
                request,
                "Replay needs a POST by a user who may change deliveries.",
                level=messages.ERROR,
            )
            return HttpResponseRedirect(change_url)
        delivery = get_object_or_404(Delivery, pk=delivery_pk)
        try:
            delivery_replay(
                delivery_id=delivery.pk, actor=request.user, reason="Replayed in the admin"
            )
        except DeliveryNotReplayable as error:
            self.message_user(request, str(error), level=messages.ERROR)
        else:
            self.message_user(request, f"Delivery {delivery.pk} queued again.")
        return HttpResponseRedirect(change_url)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        delivery = Delivery.objects.filter(pk=object_id).only("outcome").first()
        extra_context = {
            **(extra_context or {}),
            "can_replay": bool(
                delivery
                and delivery.outcome in REPLAYABLE_OUTCOMES
                and self.has_replay_permission(request)
            ),
        }
        return super().change_view(request, object_id, form_url, extra_context)


class OrderLineInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderLine
    fields = ["position", "title", "channel_sku", "sku", "quantity", "unit_price"]
    raw_id_fields = ["sku"]
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("sku")


class OrderEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderEvent
    fields = ["created_at", "kind", "message", "actor_kind", "actor"]
    readonly_fields = ["created_at"]
    raw_id_fields = ["actor"]
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("actor")


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
    autocomplete_fields = ["carrier_service"]
    show_full_result_count = False
    inlines = [OrderLineInline, OrderEventInline]


class CarrierServiceInline(admin.TabularInline):
    model = CarrierService
    fields = ["code", "name", "service_level", "is_active", "reliability", "transit_days"]
    extra = 0


@admin.register(Carrier)
class CarrierAdmin(admin.ModelAdmin):
    list_display = ["name", "code"]
    search_fields = ["name", "code"]
    inlines = [CarrierServiceInline]


@admin.register(CarrierService)
class CarrierServiceAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "carrier",
        "code",
        "service_level",
        "is_active",
        "reliability",
        "transit_days",
    ]
    list_filter = ["service_level", "carrier", "is_active"]
    search_fields = ["name", "code", "carrier__name"]
    list_select_related = ["carrier"]


class CarrierRateForm(forms.ModelForm):
    """Add form of carrier rates that rejects an unknown currency or country and a weight limit
    below 1 g or above guardrails.recommenders.rates.RATE_MAX_WEIGHT_GRAMS.

    A new rate is usually active at once and is never edited, so bad reference data would
    reach the carrier recommender until another rate replaces it. The checks are the
    validators that carrier_rate_change runs for every caller, attached to each field here.
    """

    class Meta:
        model = CarrierRate
        fields = ["service", "destination_country", "max_weight_grams", "price", "currency", "note"]

    def clean_max_weight_grams(self) -> int | None:
        weight = self.cleaned_data["max_weight_grams"]
        validate_rate_weight(weight)
        return weight

    def clean_currency(self) -> str:
        currency = self.cleaned_data["currency"]
        validate_rate_currency(currency)
        return currency

    def clean_destination_country(self) -> str:
        # Lower case is accepted and stored in capitals, as carrier_rate_change does.
        country = self.cleaned_data["destination_country"].upper()
        validate_rate_country(country)
        return country


@admin.register(CarrierRate)
class CarrierRateAdmin(admin.ModelAdmin):
    """Carrier rates. A new rate goes through carrier_rate_change, which holds it for sign-off
    when it would swap carriers on many recent orders; stored rates are never edited."""

    list_display = ["service", "destination_country", "max_weight_grams", "price", "currency"]
    list_display += ["status", "created_by", "approved_by", "created_at"]
    list_filter = ["status", "service__carrier", "destination_country"]
    search_fields = ["service__name", "note"]
    list_select_related = ["service__carrier", "created_by", "approved_by"]
    form = CarrierRateForm
    fields = ["service", "destination_country", "max_weight_grams", "price", "currency", "note"]
    actions = ["approve_pending", "reject_pending"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [*self.fields, "status", "created_by", "approved_by", "approved_at"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return self.fields
        return self.get_readonly_fields(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        from guardrails.recommenders.rates import carrier_rate_change

        if change:
            return
        result = carrier_rate_change(
            service=obj.service,
            price=obj.price,
            currency=obj.currency,
            user=request.user,
            destination_country=obj.destination_country,
            max_weight_grams=obj.max_weight_grams,
            note=obj.note,
        )
        obj.pk = result.rate.pk
        obj.status = result.rate.status
        if result.needs_signoff:
            self.message_user(
                request,
                f"The rate would swap carriers on {result.orders_swapped} of "
                f"{result.orders_checked} recent orders ({result.swap_share:.1%}). It waits for "
                "sign-off and is not used until approved.",
                messages.WARNING,
            )

    @admin.action(description="Approve pending rate", permissions=["approve"])
    def approve_pending(self, request, queryset) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description="Reject pending rate", permissions=["approve"])
    def reject_pending(self, request, queryset) -> None:
        self._decide(request, queryset, approve=False)

    def has_approve_permission(self, request) -> bool:
        return request.user.has_perm("orders.approve_carrierrate")

    def _decide(self, request, queryset, *, approve: bool) -> None:
        from guardrails.recommenders.rates import carrier_rate_approve, carrier_rate_reject

        decide = carrier_rate_approve if approve else carrier_rate_reject
        done = 0
        for rate in queryset.filter(status=CarrierRateStatus.PENDING_SIGNOFF):
            decide(rate_id=rate.pk, user=request.user)
            done += 1
        skipped = queryset.count() - done
        verb = "approved" if approve else "rejected"
        self.message_user(request, f"{done} pending rate(s) {verb}.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} selected rate(s) were not pending and were left as they are."
            )


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


@admin.register(PriorityCustomer)
class PriorityCustomerAdmin(admin.ModelAdmin):
    """Customers whose orders get a priority_customer flag on their channel."""

    list_display = ["channel", "customer_id", "email", "note", "created_at"]
    list_filter = ["channel"]
    search_fields = ["customer_id", "email", "note"]
    list_select_related = ["channel"]


@admin.register(ChannelApiGrant)
class ChannelApiGrantAdmin(admin.ModelAdmin):
    """Which canonical channels each API user may post orders for."""

    list_display = ["user", "channel", "created_at"]
    list_filter = ["channel"]
    list_select_related = ["user", "channel"]
    raw_id_fields = ["user"]


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["key", "user", "response_status", "created_at"]
    search_fields = ["key"]
    list_select_related = ["user"]


# --- Facts reported after fulfilment: read-only, because the KPIs count them as reported ----

ORDER_SEARCH_FIELDS = ["order__order_number", "order__channel_order_id"]


@admin.register(Shipment)
class ShipmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "shipment_id",
        "order",
        "channel",
        "carrier_code",
        "carrier_service",
        "status",
        "is_duplicate",
        "address_corrected",
        "shipped_at",
    ]
    list_filter = ["status", "is_duplicate", "address_corrected", "channel"]
    search_fields = ["shipment_id", "tracking_number", *ORDER_SEARCH_FIELDS]
    list_select_related = ["order__channel", "channel", "carrier_service"]
    date_hierarchy = "shipped_at"
    show_full_result_count = False


@admin.register(FulfilmentException)
class FulfilmentExceptionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["order", "channel", "stage", "reason", "shipment", "occurred_at"]
    list_filter = ["stage", "reason", "channel"]
    search_fields = ["shipment__shipment_id", "note", *ORDER_SEARCH_FIELDS]
    list_select_related = ["order__channel", "channel", "shipment"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False


@admin.register(OrderReturn)
class OrderReturnAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "return_id",
        "order",
        "channel",
        "reason",
        "attributed_to",
        "involves_substitution",
        "received_at",
    ]
    list_filter = ["attributed_to", "reason", "involves_substitution", "channel"]
    search_fields = ["return_id", *ORDER_SEARCH_FIELDS]
    list_select_related = ["order__channel", "channel"]
    date_hierarchy = "received_at"
    show_full_result_count = False


@admin.register(Chargeback)
class ChargebackAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["chargeback_id", "order", "channel", "disputed", "reason", "received_at"]
    list_filter = ["channel", "currency"]
    search_fields = ["chargeback_id", "reason", *ORDER_SEARCH_FIELDS]
    list_select_related = ["order__channel", "channel"]
    date_hierarchy = "received_at"
    show_full_result_count = False

    @admin.display(description="Amount", ordering="amount")
    def disputed(self, obj: Chargeback) -> str:
        return f"{obj.currency} {money_format(obj.amount, obj.currency)}"
