"""Admin for known-answer cases: the list with reviewer results, switching cases on and off,
and the add form that copies a decided review item through `known_answer_from_item`.

CS managers may view and add cases. Ops managers may also change them (switch them on or off
and edit the explanation). Cases cannot be deleted, because seeded items point at them.
"""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from guardrails.services import audit_record

from .known_answers import (
    known_answer_expected_check,
    known_answer_explanation_check,
    known_answer_from_item,
    known_answer_set_active,
    known_answer_source_get,
)
from .models import KnownAnswer, KnownAnswerChoice
from .services import ReviewError

# Fields a change may touch; the copied case itself stays as it was made.
EDITABLE_FIELDS = ("explanation", "is_active")


class KnownAnswerAddForm(forms.ModelForm):
    """Name a decided review item and explain its answer; the service copies the rest."""

    review_item = forms.IntegerField(
        label="Decided review item id",
        min_value=1,
        help_text="An AI proposal or address item a person accepted, revised or rejected.",
    )
    expected_answer = forms.ChoiceField(
        label="Known answer",
        required=False,
        choices=[("", "As the reviewer decided (a revision counts as reject)")]
        + list(KnownAnswerChoice.choices),
    )

    class Meta:
        model = KnownAnswer
        fields = ["explanation"]

    def clean(self) -> dict:
        cleaned = super().clean()
        item_id = cleaned.get("review_item")
        try:
            if item_id is not None:
                item = known_answer_source_get(review_item_id=item_id)
                cleaned["expected_answer"] = known_answer_expected_check(
                    item=item, expected=cleaned.get("expected_answer")
                )
            if "explanation" in cleaned:
                cleaned["explanation"] = known_answer_explanation_check(cleaned["explanation"])
        except ReviewError as error:
            field = {"expected": "expected_answer"}.get(error.field, error.field)
            self.add_error(field if field in self.fields else None, error.message)
        return cleaned


@admin.register(KnownAnswer)
class KnownAnswerAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "action_code",
        "expected",
        "is_active",
        "seeded",
        "answered_correctly",
        "created_by",
        "created_at",
    ]
    list_filter = ["kind", "expected", "is_active"]
    list_select_related = ["created_by"]
    search_fields = ["action_code", "explanation", "reason"]
    show_full_result_count = False
    actions = ["activate", "deactivate"]
    readonly_fields = [
        "kind",
        "source_item",
        "action_code",
        "confidence",
        "expected",
        "reason",
        "source_data",
        "proposal",
        "created_by",
        "created_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[KnownAnswer]:
        decided = Q(seeded_items__known_answer_correct__isnull=False)
        correct = Q(seeded_items__known_answer_correct=True)
        return (
            super()
            .get_queryset(request)
            .annotate(
                seeded_count=Count("seeded_items"),
                decided_count=Count("seeded_items", filter=decided),
                correct_count=Count("seeded_items", filter=correct),
            )
        )

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):
        if obj is None:
            kwargs["form"] = KnownAnswerAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return ["review_item", "expected_answer", "explanation"]
        return [*self.readonly_fields[:5], *EDITABLE_FIELDS, *self.readonly_fields[5:]]

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return [] if obj is None else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_form(self, request: HttpRequest, form, change: bool):
        if change:
            return super().save_form(request, form, change)
        # The service copies and scrubs the item; the form only named it.
        return known_answer_from_item(
            review_item_id=form.cleaned_data["review_item"],
            user=request.user,
            expected=form.cleaned_data["expected_answer"],
            explanation=form.cleaned_data["explanation"],
        )

    def save_model(self, request: HttpRequest, obj: KnownAnswer, form, change: bool) -> None:
        if not change:
            return  # Saved by known_answer_from_item in save_form.
        changed = [name for name in form.changed_data if name in EDITABLE_FIELDS]
        if not changed:
            return
        with transaction.atomic():
            obj.save()
            audit_record(
                action="known_answer.changed",
                target_type="known_answer",
                target_id=obj.pk,
                actor=request.user,
                reason="Changed in the admin.",
                before={name: form.initial.get(name) for name in changed},
                after={name: form.cleaned_data[name] for name in changed},
            )

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        if change:
            super().save_related(request, form, formsets, change)

    @admin.display(description="Seeded", ordering="seeded_count")
    def seeded(self, case: KnownAnswer) -> int:
        return case.seeded_count

    @admin.display(description="Answered correctly")
    def answered_correctly(self, case: KnownAnswer) -> str:
        if not case.decided_count:
            return "-"
        return f"{case.correct_count} of {case.decided_count}"

    @admin.action(description="Seed into queues again", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[KnownAnswer]) -> None:
        self._set_active(request, queryset, active=True)

    @admin.action(description="Stop seeding into queues", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[KnownAnswer]) -> None:
        self._set_active(request, queryset, active=False)

    def _set_active(self, request: HttpRequest, queryset, *, active: bool) -> None:
        changed = 0
        for case_id, is_active in queryset.order_by("pk").values_list("pk", "is_active"):
            if is_active == active:
                continue
            known_answer_set_active(known_answer_id=case_id, user=request.user, active=active)
            changed += 1
        state = "seeded again" if active else "no longer seeded"
        level = messages.SUCCESS if changed else messages.WARNING
        self.message_user(request, f"{changed} known answer(s) {state}.", level)
