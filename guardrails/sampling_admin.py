"""Admin of the audit sampling states: read-only, with a "Recompute now" action."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from . import sampling
from .models import SamplingState


@admin.register(SamplingState)
class SamplingStateAdmin(admin.ModelAdmin):
    list_display = ["action", "rate", "disagreement_rate", "reviewed", "computed_at"]
    list_select_related = ["action"]
    readonly_fields = [field.name for field in SamplingState._meta.fields]
    actions = ["recompute_now"]

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Recompute now", permissions=["view"])
    def recompute_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        # The rate is derived from reviewed decisions, so anyone who may see it may refresh it.
        for state in queryset.select_related("action"):
            sampling.sampling_rate_recompute(action_code=state.action.code)
        self.message_user(request, f"Recomputed {queryset.count()} sampling rates.")
