"""Admin of the error taxonomy (edited by ops managers) and a read-only list of error labels.

Terms are switched off instead of deleted, so old labels keep their meaning. A term's kind
and code are fixed once it exists, because exports and reports refer to them.
"""

from django import forms
from django.contrib import admin, messages
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import pluralize

from guardrails.services import audit_record

from .feedback import worst_impact_weight
from .models import ErrorLabel, LabelKind, LabelTerm

# Fields of a term copied into the audit entry of a change.
AUDITED_FIELDS = ["kind", "code", "name", "description", "weight", "position", "is_active"]

# Term codes appear in exports, the CSV and API filters, so they stay plain ASCII identifiers.
# A SlugField alone also takes capitals.
term_code_validator = RegexValidator(
    r"^[a-z0-9_-]+\Z",
    "Invalid code: use lowercase letters, digits, _ and - only, e.g. wrong_carrier.",
)


class LabelTermForm(forms.ModelForm):
    """Form for a label term: limits a new code to lowercase letters, digits, _ and -, and explains
    which kinds use the weight."""

    class Meta:
        model = LabelTerm
        fields = ["kind", "code", "name", "description", "weight", "position", "is_active"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "code" in self.fields:
            # Replaces SlugField's validator, which accepts capitals.
            self.fields["code"].validators = [term_code_validator]
        if "weight" in self.fields:
            self.fields["weight"].help_text = (
                "Impacts only: how bad it is, 1 (minor) upwards. Ranks the weekly review, and "
                "the heaviest active impact weight defines its worst errors. Causes and "
                "corrective actions ignore it."
            )


@admin.register(LabelTerm)
class LabelTermAdmin(admin.ModelAdmin):
    form = LabelTermForm
    list_display = ["name", "kind", "code", "impact_weight", "position", "is_active"]
    list_editable = ["position", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name"]
    ordering = ["kind", "position", "name"]
    actions = ["switch_off", "switch_on"]

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return ["kind", "code"] if obj is not None else []

    def get_fields(self, request: HttpRequest, obj=None) -> list[str]:
        fields = list(super().get_fields(request, obj))
        # Only impacts use a weight, so an existing cause or corrective action does not show one.
        if obj is not None and obj.kind != LabelKind.IMPACT:
            fields.remove("weight")
        return fields

    @admin.display(description="Weight", ordering="weight")
    def impact_weight(self, obj: LabelTerm) -> int | str:
        return obj.weight if obj.kind == LabelKind.IMPACT else "-"

    def save_model(self, request: HttpRequest, obj: LabelTerm, form, change: bool) -> None:
        before = None
        if change:
            before = LabelTerm.objects.filter(pk=obj.pk).values(*AUDITED_FIELDS).first()
        worst_before = worst_impact_weight()
        super().save_model(request, obj, form, change)
        _audit(request, obj, "label_term.changed" if change else "label_term.added", before)
        self._warn_worst_weight_change(request, worst_before)

    @admin.action(description="Switch off the selected terms", permissions=["change"])
    def switch_off(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._switch(request, queryset, active=False)

    @admin.action(description="Switch on the selected terms", permissions=["change"])
    def switch_on(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._switch(request, queryset, active=True)

    def _switch(self, request: HttpRequest, queryset: QuerySet, *, active: bool) -> None:
        changed = 0
        worst_before = worst_impact_weight()
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
        self._warn_worst_weight_change(request, worst_before)

    def _warn_worst_weight_change(self, request: HttpRequest, worst_before: int | None) -> None:
        """Warn when a save moved the weight from which labels count as worst errors.

        The change is allowed, but it changes which labels the weekly review's 30-day target
        counts.
        """
        worst_after = worst_impact_weight()
        if worst_after == worst_before:
            return
        if worst_after is None:
            message = (
                f"No impact term is active now (the heaviest weight was {worst_before}), so the "
                "weekly review's 30-day target has no worst errors to count."
            )
        elif worst_before is None:
            message = (
                f"The weekly review's 30-day target now counts labels with an impact weight of "
                f"{worst_after} or more as worst errors (no impact term was active before)."
            )
        else:
            message = (
                f"The heaviest active impact weight changed from {worst_before} to "
                f"{worst_after}. The weekly review's 30-day target now counts labels with an "
                f"impact weight of {worst_after} or more as worst errors (was {worst_before} or "
                "more). If that is not intended, change the weight back or switch the term off."
            )
        self.message_user(request, message, messages.WARNING)


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
