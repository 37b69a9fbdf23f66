"""KPI rollups, alert rules, alerts with their history, and where notifications go."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    ACTIONABLE = "actionable", "Actionable"
    INFORMATIONAL = "informational", "Informational"


SEVERITY_RANK = {Severity.INFORMATIONAL: 0, Severity.ACTIONABLE: 1, Severity.CRITICAL: 2}


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"


class Alert(models.Model):
    """A condition someone must know about, with its owner and the runbook to fix it.

    `dedup_key` names the condition, e.g. "carrier_rate_signoff:42". At most one alert per
    key is open at a time; raising the same key again updates that alert.
    """

    severity = models.CharField(max_length=16, choices=Severity.choices)
    source = models.CharField(
        max_length=100, help_text="The component that raised it, e.g. carrier_rates."
    )
    dedup_key = models.CharField(max_length=200, db_index=True)
    title = models.CharField(max_length=300)
    detail = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="The figures behind the alert.")
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    owner_group = models.CharField(
        max_length=150, help_text="Name of the role group that owns the alert, e.g. ops_manager."
    )
    runbook = models.TextField(help_text="Numbered steps; the first is one remediation action.")
    occurrences = models.PositiveIntegerField(
        default=1, help_text="How often the condition was raised while this alert was open."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_raised_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True)
    rule = models.ForeignKey(
        "AlertRule",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="alerts",
        help_text="The rule that raised it; empty for alerts raised by a component.",
    )
    scope = models.CharField(
        max_length=200, blank=True, help_text='What the rule looked at, e.g. "channel=shop-eu".'
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    silenced_until = models.DateTimeField(
        null=True, blank=True, help_text="No notifications for this alert until then."
    )
    silenced_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["dedup_key"],
                condition=Q(status="open"),
                name="alert_one_open_per_dedup_key",
            )
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.title} ({self.status})"


class AlertEventKind(models.TextChoices):
    OPENED = "opened", "Opened"
    RAISED_AGAIN = "raised_again", "Raised again"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    SILENCED = "silenced", "Silenced"
    UNSILENCED = "unsilenced", "Silence lifted"
    REMEDIATED = "remediated", "Remediation action taken"
    RESOLVED = "resolved", "Resolved"
    NOTIFIED = "notified", "Notification sent"
    NOTIFICATION_FAILED = "notification_failed", "Notification failed"


class AlertEvent(models.Model):
    """One entry in an alert's history: who or what did what, when, with which figures."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, choices=AlertEventKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    note = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["alert", "created_at"], name="alert_event_alert_time")]

    def __str__(self) -> str:
        return f"{self.kind} on alert {self.alert_id}"


class AlertRuleKind(models.TextChoices):
    THRESHOLD = "threshold", "Fixed threshold on the KPI's value"
    BASELINE_DEVIATION = "baseline_deviation", "Deviation from the KPI's own baseline"
    RATE_PER_1000 = "rate_per_1000", "Count per 1,000 orders"


class Comparison(models.TextChoices):
    ABOVE = "above", "Above"
    BELOW = "below", "Below"


class Remediation(models.TextChoices):
    OPEN_BREAKER = "open_breaker", "Open the action's circuit breaker"
    HOLD_CHANNEL = "hold_channel", "Hold the channel's orders"
    ESCALATE_QUEUE = "escalate_queue", "Escalate the queue's overdue items to its managers"
    PAUSE_CANARIES = "pause_canaries", "Pause the running canaries"


class AlertScope(models.TextChoices):
    ALL = "all", "All channels together"
    PER_CHANNEL = "per_channel", "Each channel on its own"


class AlertRule(models.Model):
    """When a KPI crosses a line, open an alert with this severity, owner and runbook.

    `kpi` names an entry of monitoring.kpis.KPIS. For a threshold rule, `threshold` is in the
    KPI's own unit. For a baseline rule it is the allowed deviation in percent of the
    baseline, and for a rate rule the count per 1,000 orders received in the window.
    """

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    kpi = models.CharField(max_length=64, help_text="The KPI the rule watches.")
    kind = models.CharField(max_length=32, choices=AlertRuleKind.choices)
    comparison = models.CharField(
        max_length=8,
        choices=Comparison.choices,
        default=Comparison.ABOVE,
        help_text="Threshold rules: fire above or below the threshold. Baseline rules fire "
        "on a deviation either way.",
    )
    threshold = models.DecimalField(
        max_digits=14, decimal_places=4, validators=[MinValueValidator(Decimal("0"))]
    )
    window_minutes = models.PositiveIntegerField(
        default=60,
        validators=[MinValueValidator(5)],
        help_text="How far back the KPI is measured for each evaluation.",
    )
    baseline_days = models.PositiveSmallIntegerField(
        default=7,
        validators=[MinValueValidator(1)],
        help_text="Baseline rules: the days before the window that make up the baseline.",
    )
    min_sample = models.PositiveIntegerField(
        default=20,
        help_text="Do not judge with fewer events than this in the window (e.g. orders).",
    )
    dimension = models.CharField(
        max_length=100,
        blank=True,
        help_text="Only this action, queue or carrier (the KPI says which); empty: all.",
    )
    scope = models.CharField(max_length=16, choices=AlertScope.choices, default=AlertScope.ALL)
    channel = models.ForeignKey(
        "catalog.Channel",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alert_rules",
        help_text="Only this channel; empty: as the scope says.",
    )
    severity = models.CharField(max_length=16, choices=Severity.choices)
    owner_group = models.ForeignKey(
        "auth.Group", on_delete=models.PROTECT, related_name="+", help_text="Who owns the alert."
    )
    runbook = models.TextField(help_text="Numbered steps; step 1 is the remediation below.")
    remediation = models.CharField(
        max_length=32,
        choices=Remediation.choices,
        help_text="The first runbook step, offered as one button on the alert.",
    )
    remediation_target = models.CharField(
        max_length=100,
        blank=True,
        help_text="The action code (breaker), channel code (hold), queue kind (escalate) or "
        "canary id (pause) the button acts on; empty: taken from the alert's scope, or every "
        "running canary.",
    )
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class NotificationKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "JSON webhook (Slack-compatible)"


class NotificationTarget(models.Model):
    """A destination for alert notifications: an email address or a webhook URL."""

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    address = models.CharField(
        max_length=500, help_text="The email address, or the webhook's http(s) URL."
    )
    min_severity = models.CharField(
        max_length=16,
        choices=Severity.choices,
        default=Severity.ACTIONABLE,
        help_text="Alerts below this severity are not sent here.",
    )
    owner_group = models.ForeignKey(
        "auth.Group",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Only alerts this group owns; empty: every owner.",
    )
    notify_on_resolve = models.BooleanField(default=True)
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed after every retry"


class AlertNotification(models.Model):
    """One message about one alert event to one target, with its delivery attempts."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    target = models.ForeignKey(
        NotificationTarget, on_delete=models.CASCADE, related_name="notifications"
    )
    event = models.CharField(max_length=32, help_text="opened or resolved.")
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "target", "event"], name="alert_notification_once"
            )
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="alert_notif_status")]

    def __str__(self) -> str:
        return f"{self.event} of alert {self.alert_id} to {self.target}"


class Granularity(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class KpiRollup(models.Model):
    """One counter's sum over one hour or day, for one channel and one dimension value.

    Counters are additive (events counted in `count`, a quantity such as seconds summed in
    `total`, a latency histogram in `histogram`), so any period, channel or dimension is a sum
    of rows and the dashboard never reads the raw tables. Gauge counters (queue size) store a
    snapshot instead: the last value seen in the bucket. `channel` and `dimension` are "" when
    the counter has no such split.
    """

    counter = models.CharField(max_length=64)
    granularity = models.CharField(max_length=4, choices=Granularity.choices)
    bucket_start = models.DateTimeField()
    channel = models.CharField(max_length=64, blank=True, default="")
    dimension = models.CharField(max_length=100, blank=True, default="")
    count = models.BigIntegerField(default=0)
    total = models.DecimalField(max_digits=24, decimal_places=3, default=Decimal("0"))
    histogram = models.JSONField(
        default=list, blank=True, help_text="Counts per bound of kpis.LATENCY_BOUNDS_SECONDS."
    )
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["counter", "granularity", "bucket_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["counter", "granularity", "bucket_start", "channel", "dimension"],
                name="kpi_rollup_unique_bucket",
            )
        ]
        indexes = [
            models.Index(
                fields=["granularity", "counter", "bucket_start"], name="kpi_rollup_lookup"
            ),
            # The dashboard's default baseline starts at the first bucket; /metrics reports
            # the last refresh. Both read one end of these columns.
            models.Index(fields=["bucket_start"], name="kpi_rollup_bucket"),
            models.Index(fields=["computed_at"], name="kpi_rollup_computed"),
        ]

    def __str__(self) -> str:
        return f"{self.counter} {self.granularity} {self.bucket_start:%Y-%m-%d %H:%M}"


class MonitoringSettings(models.Model):
    """One row: the baseline period the 90-day targets are measured against.

    Without dates, the baseline is the first 30 days that have data.
    """

    baseline_start = models.DateField(null=True, blank=True)
    baseline_end = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "monitoring settings"
        verbose_name_plural = "monitoring settings"
        permissions = [("view_dashboard", "Can view the KPI dashboard")]

    def __str__(self) -> str:
        return "Monitoring settings"
