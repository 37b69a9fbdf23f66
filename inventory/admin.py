from django import forms
from django.contrib import admin
from django.http import HttpRequest

from .models import (
    InventoryDiscrepancy,
    Location,
    Replenishment,
    Reservation,
    StockEvent,
    StockLevel,
)
from .selectors import snapshot_is_stale
from .services import discrepancy_record, stock_level_version_reset


class ReadOnlyAdminMixin:
    """Stock changes only through events, reservations and counts, so the admin only displays it."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "kind", "is_active", "updated_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name"]

    def has_delete_permission(self, request, obj=None) -> bool:
        # Stock levels, events and reservations refer to a location, so deactivate it instead.
        return False


@admin.register(StockLevel)
class StockLevelAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "sku_code",
        "location_code",
        "on_hand",
        "reserved",
        "available",
        "version",
        "counted_at",
        "is_stale",
    ]
    list_filter = ["location"]
    search_fields = ["sku__code", "location__code"]
    list_select_related = ["sku", "location"]
    raw_id_fields = ["sku"]
    # Counting all rows of a large table for every page is slow and adds little.
    show_full_result_count = False

    @admin.display(description="SKU", ordering="sku__code")
    def sku_code(self, level: StockLevel) -> str:
        return level.sku.code

    @admin.display(description="location", ordering="location__code")
    def location_code(self, level: StockLevel) -> str:
        return level.location.code

    @admin.display(description="available")
    def available(self, level: StockLevel) -> int:
        return level.available

    @admin.display(description="stale", boolean=True)
    def is_stale(self, level: StockLevel) -> bool:
        return snapshot_is_stale(level.counted_at)

    actions = ["reset_version"]

    @admin.action(description="Reset the applied version to 0", permissions=["reset_version"])
    def reset_version(self, request: HttpRequest, queryset) -> None:
        for level in queryset.order_by("pk"):
            stock_level_version_reset(
                level_id=level.pk,
                actor=request.user,
                reason="reset in the admin after a wrong source version",
            )
        self.message_user(request, f"Reset the version of {queryset.count()} stock levels.")

    def has_reset_version_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("inventory.reset_version_stocklevel")


@admin.register(StockEvent)
class StockEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "received_at",
        "source",
        "event_id",
        "sku",
        "location",
        "kind",
        "quantity",
        "version",
        "outcome",
    ]
    list_filter = ["outcome", "kind", "source", "location"]
    search_fields = ["event_id", "sku__code"]
    list_select_related = ["sku", "location"]
    raw_id_fields = ["sku", "posted_by"]
    date_hierarchy = "received_at"
    show_full_result_count = False


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "order", "order_line", "stock_level", "quantity", "status"]
    list_filter = ["status"]
    search_fields = ["order__order_number", "stock_level__sku__code"]
    list_select_related = ["order", "order__channel", "order_line", "stock_level__sku"]
    raw_id_fields = ["order", "order_line", "stock_level"]
    show_full_result_count = False


class DiscrepancyForm(forms.ModelForm):
    correct = forms.BooleanField(
        required=False,
        initial=True,
        label="Correct on hand to the count",
        help_text="Posts an absolute stock event that sets on hand to the counted quantity.",
    )

    class Meta:
        model = InventoryDiscrepancy
        fields = ["sku", "location", "counted", "note"]


@admin.register(InventoryDiscrepancy)
class DiscrepancyAdmin(admin.ModelAdmin):
    form = DiscrepancyForm
    list_display = [
        "created_at",
        "sku",
        "location",
        "expected",
        "counted",
        "difference",
        "reported_by",
    ]
    list_filter = ["location"]
    search_fields = ["sku__code"]
    list_select_related = ["sku", "location", "reported_by"]
    autocomplete_fields = ["sku"]
    readonly_fields = ["expected", "difference", "reported_by", "correction", "created_at"]

    def get_fields(self, request: HttpRequest, obj=None) -> list[str]:
        if obj is None:
            return ["sku", "location", "counted", "correct", "note"]
        return [
            "sku",
            "location",
            "expected",
            "counted",
            "difference",
            "reported_by",
            "note",
            "correction",
            "created_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        if obj is None:
            return []
        return self.get_fields(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        created = discrepancy_record(
            sku=form.cleaned_data["sku"],
            location=form.cleaned_data["location"],
            counted=form.cleaned_data["counted"],
            note=form.cleaned_data["note"],
            correct=form.cleaned_data["correct"],
            reported_by=request.user,
        )
        # The admin's "added" message and redirect use the object the service created.
        obj.pk = created.pk
        obj.expected = created.expected
        obj.difference = created.difference


@admin.register(Replenishment)
class ReplenishmentAdmin(admin.ModelAdmin):
    """Expected arrivals; the substitution recommender shows the earliest as the ETA."""

    list_display = ["sku", "location", "quantity", "expected_at", "source_reference", "created_at"]
    list_filter = ["location"]
    search_fields = ["sku__code", "source_reference"]
    autocomplete_fields = ["sku"]
    date_hierarchy = "expected_at"
