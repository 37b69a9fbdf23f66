"""Read-only admin of customer address confirmations, with the time each customer took."""

import json

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from orders.masking import mask_email, mask_personal_data, may_view_pii

from .confirmations import time_to_answer
from .models import AddressConfirmation

# The customer's email and addresses: in full for the PII permission, masked otherwise.
PII_FIELDS = ["email", "proposed_address", "corrected_address"]
MASKED_FIELDS = ["email_masked", "proposed_masked", "corrected_masked"]
OTHER_FIELDS = [
    "created_at",
    "sent_at",
    "send_attempts",
    "last_error",
    "expires_at",
    "answered_at",
    "answer",
    "time_to_answer_display",
]


@admin.register(AddressConfirmation)
class AddressConfirmationAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "order",
        "review_item",
        "created_at",
        "sent_at",
        "send_attempts",
        "answer",
        "time_to_answer_display",
    ]
    list_filter = ["answer"]
    list_select_related = ["order", "review_item"]
    raw_id_fields = ["order", "review_item"]
    show_full_result_count = False
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_fields(self, request: HttpRequest, obj=None) -> list[str]:
        personal = PII_FIELDS if may_view_pii(request.user) else MASKED_FIELDS
        return ["order", "review_item", *personal, *OTHER_FIELDS]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return self.get_fields(request, obj)

    @admin.display(description="time to answer")
    def time_to_answer_display(self, confirmation: AddressConfirmation) -> str:
        elapsed = time_to_answer(confirmation)
        if elapsed is None:
            return "-"
        minutes, seconds = divmod(int(elapsed.total_seconds()), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes:02d} min {seconds:02d} s"

    @admin.display(description="email")
    def email_masked(self, confirmation: AddressConfirmation) -> str:
        return mask_email(confirmation.email)

    @admin.display(description="proposed address")
    def proposed_masked(self, confirmation: AddressConfirmation) -> str:
        return _masked(confirmation.proposed_address)

    @admin.display(description="corrected address")
    def corrected_masked(self, confirmation: AddressConfirmation) -> str:
        return _masked(confirmation.corrected_address)


def _masked(address: dict | None) -> str:
    if address is None:
        return "-"
    masked = mask_personal_data(address, container="address")
    return format_html("<pre>{}</pre>", json.dumps(masked, indent=2, ensure_ascii=False))
