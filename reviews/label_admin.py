"""Admin of the error taxonomy (edited by ops managers) and a read-only list of error labels.

Terms are switched off instead of deleted, so old labels keep their meaning. A term's kind
and code are fixed once it exists, because exports and reports refer to them.
"""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import pluralize

from guardrails.services import audit_record

from .models import ErrorLabel, LabelTerm

# Fields of a term copied into the audit entry of a change.
AUDITED_FIELDS = ["kind", "code", "name", "description", "weight", "position", "is_active"]


@admin.register(LabelTerm)
class LabelTermAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "code", "weight", "position", "is_active"]
    list_editable = ["position", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name"]
    ordering = ["kind", "position", "name"]
    actions = ["switch_off", "switch_on"]

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return ["kind", "code"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: LabelTerm, form, change: bool) -> None:
        before = None
        if change:
            before = LabelTerm.objects.filter(pk=obj.pk).values(*AUDITED_FIELDS).first()
        super().save_model(request, obj, form, change)
        _audit(request, obj, "label_term.changed" if change else "label_term.added", before)

    @admin.action(description="Switch off the selected terms", permissions=["change"])
    def switch_off(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._switch(request, queryset, active=False)

    @admin.action(description="Switch on the selected terms", permissions=["change"])
    def switch_on(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._switch(request, queryset, active=True)

    def _switch(self, request: HttpRequest, queryset: QuerySet, *, active: bool) -> None:
        changed = 0
        for term in queryset.exclude(is_active=active):
            before = {field: getattr(term, field) for field in AUDITED_FIELDS}
            term.is_active = active
            term.save(update_fields=["is_active"])
            _audit(request, term, "label_term.changed", before)
            changed += 1
        state = "on" if active else "off"
        self.message_user(
            request, f"Switched {state} {changed} term{pluralize(changed)}.", messages.SUCCESS
        )


def _audit(request: HttpRequest, term: LabelTerm, action: str, before: dict | None) -> None:
    audit_record(
        action=action,
        target_type="reviews.labelterm",
        target_id=term.pk,
        actor=request.user,
        before=before,
        after={field: getattr(term, field) for field in AUDITED_FIELDS},
    )


@admin.register(ErrorLabel)
class ErrorLabelAdmin(admin.ModelAdmin):
    """Labels are added in the review queue, on orders or through the API, never here."""

    list_display = [
        "id",
        "labelled_at",
        "decision",
        "review_item",
        "cause",
        "impact",
        "corrective_action",
        "labelled_by",
        "fix",
    ]
    list_filter = [
        ("cause", admin.RelatedOnlyFieldListFilter),
        ("impact", admin.RelatedOnlyFieldListFilter),
        ("corrective_action", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = [
        "decision__action",
        "review_item",
        "cause",
        "impact",
        "corrective_action",
        "labelled_by",
        "fix",
    ]
    raw_id_fields = ["decision", "review_item", "fix", "fixed_in", "labelled_by"]
    date_hierarchy = "labelled_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
