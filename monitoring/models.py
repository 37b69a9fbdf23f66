"""Alerts: one record per open condition, deduplicated by key, resolved when it clears."""

from django.db import models
from django.db.models import Q


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    ACTIONABLE = "actionable", "Actionable"
    INFORMATIONAL = "informational", "Informational"


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
