"""Admin for breakers, their events and the autonomy gates.

Breaker rows only change through the breaker services, so every change has its event and
audit entry: the change form is read-only and opening or closing by hand are list actions
that take a reason. The add form opens a breaker by hand for a scope that has no row yet.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import pluralize

from catalog.models import Channel

from . import autonomy, breakers
from .models import ActionType, AutonomyGate, Breaker, BreakerEvent, BreakerScope

OPERATE_PERMISSION = "guardrails.operate_breaker"


class BreakerActionForm(ActionForm):
    reason = forms.CharField(
        required=False,
        max_length=2000,
        help_text="Why you open or close the selected breakers; recorded with the change.",
    )


class BreakerOpenForm(forms.ModelForm):
    """Open a breaker by hand for a scope that has no breaker row yet."""

    reason = forms.CharField(widget=forms.Textarea, max_length=2000)

    class Meta:
        model = Breaker
        fields = ["scope", "key"]

    def clean(self) -> dict:
        data = super().clean()
        scope, key = data.get("scope"), data.get("key")
        if scope == BreakerScope.ACTION and not ActionType.objects.filter(code=key).exists():
            self.add_error("key", f"Unknown action type code {key!r}.")
        if scope == BreakerScope.CHANNEL and not Channel.objects.filter(code=key).exists():
            self.add_error("key", f"Unknown channel code {key!r}.")
        return data


class BreakerEventInline(admin.TabularInline):
    model = BreakerEvent
    extra = 0
    fields = ["created_at", "from_state", "to_state", "cause", "detail", "data", "actor"]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Breaker)
class BreakerAdmin(admin.ModelAdmin):
    list_display = ["scope", "key", "state", "cause", "cause_detail", "changed_at"]
    list_filter = ["state", "scope", "cause"]
    search_fields = ["key", "cause_detail"]
    readonly_fields = [
        "scope",
        "key",
        "state",
        "cause",
        "cause_detail",
        "changed_at",
        "trial_started_at",
        "updated_at",
    ]
    inlines = [BreakerEventInline]
    action_form = BreakerActionForm
    actions = ["open_by_hand", "close_by_hand"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(OPERATE_PERMISSION)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(OPERATE_PERMISSION)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = BreakerOpenForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["scope", "key", "reason"]
        return self.readonly_fields

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj: Breaker, form, change: bool) -> None:
        opened = breakers.breaker_open(
            scope=obj.scope,
            key=obj.key,
            cause="manual",
            detail=form.cleaned_data["reason"],
            user=request.user,
        )
        # The service created the row; the admin's redirect needs its primary key.
        obj.pk = opened.pk
        obj.refresh_from_db()

    @admin.action(description="Open by hand", permissions=["operate"])
    def open_by_hand(self, request: HttpRequest, queryset: QuerySet) -> None:
        reason = _reason(self, request)
        if reason is None:
            return
        opened, made_manual, already_open = 0, [], []
        for breaker in queryset:
            result = breakers.breaker_open_by_id(
                breaker_id=breaker.pk, user=request.user, detail=reason
            )
            name = f"{breaker.scope} {breaker.key}"
            if breaker.state != result.state:
                opened += 1
            elif breaker.cause != result.cause:
                # A hand-opened cause is firmer than an automatic or upstream one, so the
                # service replaced it: the breaker now stays open until someone closes it.
                made_manual.append(name)
            else:
                already_open.append(name)
        if opened or not (made_manual or already_open):
            self.message_user(request, f"Opened {opened} breaker{pluralize(opened)} by hand.")
        if made_manual:
            self.message_user(
                request,
                f"Already open, now held open by hand until closed: {', '.join(made_manual)}.",
            )
        if already_open:
            self.message_user(
                request,
                f"Already open by hand, left as they were: {', '.join(already_open)}.",
                messages.WARNING,
            )

    @admin.action(description="Close by hand", permissions=["operate"])
    def close_by_hand(self, request: HttpRequest, queryset: QuerySet) -> None:
        reason = _reason(self, request)
        if reason is None:
            return
        closed, already_closed = 0, []
        for breaker in queryset:
            result = breakers.breaker_close(breaker_id=breaker.pk, user=request.user, detail=reason)
            if breaker.state == result.state:
                already_closed.append(f"{breaker.scope} {breaker.key}")
            else:
                closed += 1
        if closed or not already_closed:
            self.message_user(request, f"Closed {closed} breaker{pluralize(closed)} by hand.")
        if already_closed:
            self.message_user(
                request,
                f"Already closed, left as they were: {', '.join(already_closed)}.",
                messages.WARNING,
            )


def _reason(model_admin: admin.ModelAdmin, request: HttpRequest) -> str | None:
    reason = request.POST.get("reason", "").strip()
    if not reason:
        model_admin.message_user(
            request, "Enter a reason in the Reason field before you run the action.", messages.ERROR
        )
        return None
    return reason


@admin.register(BreakerEvent)
class BreakerEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "breaker", "from_state", "to_state", "cause", "actor"]
    list_filter = ["cause", "to_state", "breaker__scope"]
    search_fields = ["breaker__key", "detail"]
    readonly_fields = [field.name for field in BreakerEvent._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AutonomyGate)
class AutonomyGateAdmin(admin.ModelAdmin):
    list_display = [
        "action",
        "suspended",
        "error_rate",
        "errors",
        "autonomous_decisions",
        "computed_at",
        "changed_at",
    ]
    list_filter = ["suspended"]
    readonly_fields = [field.name for field in AutonomyGate._meta.fields]
    actions = ["recompute_now"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Recompute now", permissions=["view"])
    def recompute_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        # The gate is derived from labelled decisions, so anyone who may see it may refresh it.
        for gate in queryset.select_related("action"):
            autonomy.autonomy_gate_recompute(action_code=gate.action.code)
        self.message_user(request, f"Recomputed {queryset.count()} autonomy gates.")
