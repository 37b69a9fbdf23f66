"""Admin for alert rules, notification targets, alerts and the monitoring settings.

Rules and targets are validated against the KPI registry and the data they point at, so a
rule saved here can always be evaluated. Alerts are read-only: services raise and resolve
them, and the actions acknowledge and silence through the same services as the alert page.
"""

from datetime import UTC, timedelta

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Max, Q
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from .alerting import EACH_DIMENSION, RULE_DISABLED, RuleConfigError, alert_rule_check
from .kpis import COUNTERS, Unit, kpi_choices, kpi_get
from .models import (
    Alert,
    AlertEvent,
    AlertNotification,
    AlertRule,
    AlertScope,
    AlertStatus,
    MonitoringSettings,
    NotificationTarget,
    Remediation,
)
from .notifications import NotificationSendError, notification_address_error, notification_test_send
from .services import (
    AlertError,
    alert_acknowledge,
    alert_may_change,
    alert_silence,
    monitoring_admin_change_record,
    monitoring_settings_get_or_create,
    rule_alerts_resolve,
)


class AuditedAdminMixin:
    """Audit every admin create, update and delete, with the changed values before and after."""

    def save_model(self, request, obj, form, change) -> None:
        changed = [name for name in form.changed_data if _is_model_field(obj, name)]
        before = {name: form.initial.get(name) for name in changed}
        super().save_model(request, obj, form, change)
        monitoring_admin_change_record(
            instance=obj,
            actor=request.user,
            verb="updated" if change else "created",
            changed=changed,
            before=before,
        )

    def delete_model(self, request, obj) -> None:
        monitoring_admin_change_record(instance=obj, actor=request.user, verb="deleted")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:
            monitoring_admin_change_record(instance=obj, actor=request.user, verb="deleted")
        super().delete_queryset(request, queryset)


def _is_model_field(obj, name: str) -> bool:
    return any(field.name == name for field in obj._meta.concrete_fields)


# --- Alert rules -----------------------------------------------------------------------------


class AlertRuleForm(forms.ModelForm):
    kpi = forms.ChoiceField(choices=kpi_choices, help_text="The KPI the rule watches.")

    class Meta:
        model = AlertRule
        fields = [
            "name",
            "description",
            "is_enabled",
            "kpi",
            "kind",
            "comparison",
            "threshold",
            "window_minutes",
            "baseline_days",
            "min_sample",
            "dimension",
            "scope",
            "channel",
            "severity",
            "owner_group",
            "remediation",
            "remediation_target",
            "runbook",
        ]
        help_texts = {
            "threshold": "Threshold rules: the limit in the KPI's unit. Baseline rules: the "
            "allowed deviation in percent of the baseline. Rate rules: the count per 1,000 "
            "orders.",
            "dimension": "Only this action, queue or carrier (the KPI says which); empty: all "
            'together; "*": each value on its own, with one alert each.',
            "comparison": "Threshold rules: fire above or below the threshold. Baseline rules: "
            "fire on a rise (above) or a drop (below) of more than the threshold; a mix such "
            "as the carrier mix fires on a change either way.",
            "min_sample": "Do not judge with fewer events than this in the window: orders for "
            "a rate per 1,000 orders, the denominator for a ratio (shipments, reviews), "
            "shipments for the carrier mix. Counts and queue snapshots ignore it, except "
            "against a baseline of zero.",
        }

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned

        rule = AlertRule(**{name: value for name, value in cleaned.items() if name != "id"})
        try:
            alert_rule_check(rule)
        except RuleConfigError as error:
            self.add_error(error.field if error.field in self.fields else None, str(error))
            return cleaned

        self._check_dimension(rule)
        self._check_remediation(rule)
        self._check_runbook(rule)
        self._check_owner(cleaned.get("owner_group"))
        return cleaned

    def _check_owner(self, group) -> None:
        """The owner must be able to open the alert it owns."""
        if group is None:
            return
        if not group.permissions.filter(
            content_type__app_label="monitoring", codename="view_alert"
        ).exists():
            self.add_error(
                "owner_group",
                f"The group {group.name} cannot see alerts; pick a group with the "
                "monitoring.view_alert permission, e.g. ops_manager or cs_manager.",
            )

    def _check_dimension(self, rule: AlertRule) -> None:
        """Action and queue values must exist; carriers, stages and the like are free text."""
        from guardrails.models import ActionType
        from reviews.models import ReviewKind

        if not rule.dimension or rule.dimension == EACH_DIMENSION:
            return
        label = COUNTERS[kpi_get(rule.kpi).numerator].dimension
        if label == "action" and not ActionType.objects.filter(code=rule.dimension).exists():
            self.add_error("dimension", f"There is no action {rule.dimension!r}.")
        if label == "queue" and rule.dimension not in ReviewKind.values:
            self.add_error(
                "dimension",
                f"There is no queue {rule.dimension!r}; use one of {', '.join(ReviewKind.values)}.",
            )

    def _check_remediation(self, rule: AlertRule) -> None:
        from catalog.models import Channel
        from guardrails.models import ActionType

        target = rule.remediation_target
        label = COUNTERS[kpi_get(rule.kpi).numerator].dimension
        if rule.remediation == Remediation.OPEN_BREAKER:
            if target and not ActionType.objects.filter(code=target).exists():
                self.add_error("remediation_target", f"There is no action {target!r}.")
            if not target and not (label == "action" and rule.dimension):
                self.add_error(
                    "remediation_target",
                    "Name the action whose breaker opens; only a rule on an action can take "
                    "it from the alert.",
                )
        elif rule.remediation == Remediation.HOLD_CHANNEL:
            if target and not Channel.objects.filter(code=target).exists():
                self.add_error("remediation_target", f"There is no channel {target!r}.")
            per_channel = rule.scope == AlertScope.PER_CHANNEL or rule.channel is not None
            if not target and not per_channel:
                self.add_error(
                    "remediation_target",
                    "Name the channel to hold; only a rule per channel can take it from the alert.",
                )
        elif rule.remediation == Remediation.ESCALATE_QUEUE:
            self._check_escalation(rule, target, label)
        elif rule.remediation == Remediation.PAUSE_CANARIES and target:
            from guardrails.models import Canary

            is_id = target.isascii() and target.isdigit()
            if not is_id or not Canary.objects.filter(pk=int(target)).exists():
                self.add_error(
                    "remediation_target",
                    f"There is no canary #{target}; leave it empty to pause every running one.",
                )

    def _check_escalation(self, rule: AlertRule, target: str, label: str) -> None:
        from reviews.models import ReviewKind

        if kpi_get(rule.kpi).unit != Unit.SECONDS:
            self.add_error(
                "remediation",
                "Escalating a queue needs a KPI in seconds, such as the oldest open review "
                "item: the threshold is the age from which items are escalated.",
            )
        if target and target not in ReviewKind.values:
            self.add_error(
                "remediation_target",
                f"There is no queue {target!r}; use one of {', '.join(ReviewKind.values)}.",
            )
        if not target and not (label == "queue" and rule.dimension):
            self.add_error(
                "remediation_target",
                "Name the queue to escalate; only a rule on a queue can take it from the alert.",
            )

    def _check_runbook(self, rule: AlertRule) -> None:
        first = next((line.strip() for line in rule.runbook.splitlines() if line.strip()), "")
        if not first.startswith("1."):
            self.add_error(
                "runbook",
                'Number the steps; step 1 ("1. ...") is the remediation button.',
            )


@admin.register(AlertRule)
class AlertRuleAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = AlertRuleForm
    list_display = [
        "name",
        "kpi",
        "kind",
        "threshold",
        "severity",
        "owner_group",
        "scope",
        "is_enabled",
        "last_state",
    ]
    list_filter = ["is_enabled", "severity", "kind", "owner_group", "scope"]
    search_fields = ["name", "kpi", "description"]
    fieldsets = [
        (None, {"fields": ["name", "description", "is_enabled"]}),
        (
            "Condition",
            {
                "fields": [
                    "kpi",
                    "kind",
                    "comparison",
                    "threshold",
                    "window_minutes",
                    "baseline_days",
                    "min_sample",
                    "dimension",
                    "scope",
                    "channel",
                ]
            },
        ),
        (
            "Response",
            {"fields": ["severity", "owner_group", "remediation", "remediation_target", "runbook"]},
        ),
    ]

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if change and "is_enabled" in form.changed_data and not obj.is_enabled:
            resolved = rule_alerts_resolve(rule=obj, resolution=RULE_DISABLED, user=request.user)
            if resolved:
                self.message_user(request, f"{len(resolved)} open alert(s) of this rule resolved.")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("owner_group")
            .annotate(
                open_alerts=Count("alerts", filter=Q(alerts__status=AlertStatus.OPEN)),
                last_raised=Max("alerts__last_raised_at"),
            )
        )

    @admin.display(description="Last state")
    def last_state(self, rule: AlertRule) -> str:
        if rule.open_alerts:
            return f"Firing ({rule.open_alerts} open)"
        if rule.last_raised:
            return f"OK, last fired {rule.last_raised:%Y-%m-%d %H:%M} UTC"
        return "Never fired"


# --- Notification targets --------------------------------------------------------------------


class NotificationTargetForm(forms.ModelForm):
    class Meta:
        model = NotificationTarget
        fields = [
            "name",
            "kind",
            "address",
            "min_severity",
            "owner_group",
            "notify_on_resolve",
            "is_enabled",
        ]

    def clean(self):
        cleaned = super().clean()
        kind, address = cleaned.get("kind"), cleaned.get("address")
        if kind and address:
            error = notification_address_error(kind, address.strip())
            if error:
                self.add_error("address", error)
            cleaned["address"] = address.strip()
        return cleaned


@admin.register(NotificationTarget)
class NotificationTargetAdmin(AuditedAdminMixin, admin.ModelAdmin):
    form = NotificationTargetForm
    list_display = [
        "name",
        "kind",
        "min_severity",
        "owner_group",
        "notify_on_resolve",
        "is_enabled",
    ]
    list_filter = ["kind", "is_enabled", "min_severity"]
    search_fields = ["name"]
    actions = ["send_test"]

    # Sending reaches an outside address, so it needs the right to edit targets, not only to view.
    @admin.action(description="Send a test notification", permissions=["change"])
    def send_test(self, request, queryset) -> None:
        for target in queryset:
            try:
                notification_test_send(target=target)
            except NotificationSendError as error:
                self.message_user(
                    request, f"Test to {target.name} failed: {error}", level=messages.ERROR
                )
            else:
                self.message_user(request, f"Test message sent to {target.name}.")


# --- Alerts ----------------------------------------------------------------------------------


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AlertEventInline(ReadOnlyInline):
    model = AlertEvent
    fields = ["created_at", "kind", "actor", "note", "data"]
    readonly_fields = fields


class AlertNotificationInline(ReadOnlyInline):
    model = AlertNotification
    fields = ["target", "event", "status", "attempts", "last_error", "sent_at"]
    readonly_fields = fields


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Read-only: services raise and resolve alerts, so their history stays true."""

    list_display = [
        "title",
        "severity",
        "status",
        "owner_group",
        "scope",
        "occurrences",
        "acknowledged_at",
        "silenced_until",
        "created_at",
    ]
    list_filter = ["status", "severity", "source", "owner_group", "rule"]
    search_fields = ["title", "dedup_key", "detail"]
    date_hierarchy = "created_at"
    list_select_related = ["rule"]
    inlines = [AlertEventInline, AlertNotificationInline]
    actions = ["acknowledge", "silence_1h", "silence_24h"]

    def get_readonly_fields(self, request, obj=None):
        return ["alert_page"] + [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_act_permission(self, request) -> bool:
        return alert_may_change(request.user)

    @admin.display(description="Alert page")
    def alert_page(self, alert: Alert) -> str:
        return format_html(
            '<a href="{}">Open the alert page</a>', reverse("alerts:detail", args=[alert.pk])
        )

    @admin.action(description="Acknowledge", permissions=["act"])
    def acknowledge(self, request, queryset) -> None:
        self._act(
            request, queryset, lambda alert: alert_acknowledge(alert_id=alert.pk, user=request.user)
        )

    @admin.action(description="Silence for 1 hour", permissions=["act"])
    def silence_1h(self, request, queryset) -> None:
        self._silence(request, queryset, timedelta(hours=1))

    @admin.action(description="Silence for 24 hours", permissions=["act"])
    def silence_24h(self, request, queryset) -> None:
        self._silence(request, queryset, timedelta(hours=24))

    def _silence(self, request, queryset, span: timedelta) -> None:
        until = timezone.now() + span
        self._act(
            request,
            queryset,
            lambda alert: alert_silence(alert_id=alert.pk, user=request.user, until=until),
        )

    def _act(self, request, queryset, act) -> None:
        done = 0
        for alert in queryset.order_by("pk"):
            try:
                act(alert)
            except AlertError as error:
                self.message_user(request, error.message, level=messages.WARNING)
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} alert(s) updated.")


@admin.register(AlertNotification)
class AlertNotificationAdmin(admin.ModelAdmin):
    """Read-only delivery log; failed rows show why in last_error."""

    list_display = ["alert", "target", "event", "status", "attempts", "sent_at", "created_at"]
    list_filter = ["status", "event", "target"]
    list_select_related = ["alert", "target"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- Monitoring settings ---------------------------------------------------------------------


class MonitoringSettingsForm(forms.ModelForm):
    class Meta:
        model = MonitoringSettings
        fields = ["baseline_start", "baseline_end"]

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("baseline_start"), cleaned.get("baseline_end")
        if (start is None) != (end is None):
            raise forms.ValidationError(
                "Give both the start and the end of the baseline period, or neither."
            )
        if start and end and end < start:
            self.add_error("baseline_end", "The baseline cannot end before it starts.")
        # A baseline that has not started has no data, so every goal would show "Not enough
        # data" until it ends. Rejecting it also catches a mistyped year at once.
        today = timezone.now().astimezone(UTC).date()
        if start and start > today:
            self.add_error(
                "baseline_start",
                f"The baseline must start on or before today ({today.isoformat()}, UTC), "
                "because the goals compare the last 30 days with data already collected.",
            )
        return cleaned


@admin.register(MonitoringSettings)
class MonitoringSettingsAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """One row, created on first open, so ops managers can edit it without the add permission.

    Adding is offered only while the row does not exist, and it cannot be deleted.
    """

    form = MonitoringSettingsForm
    list_display = ["__str__", "baseline_start", "baseline_end", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return super().has_add_permission(request) and not MonitoringSettings.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        # The list has only one row, so it opens straight on that row's form. Creating the row
        # here rather than in a data migration also covers test databases, whose flushes
        # remove migration data.
        if not self.has_view_or_change_permission(request):
            return super().changelist_view(request, extra_context)
        row = monitoring_settings_get_or_create()
        return redirect(f"admin:{row._meta.app_label}_{row._meta.model_name}_change", row.pk)
