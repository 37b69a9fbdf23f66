"""The alert lifecycle: raise, resolve, acknowledge, silence and remediate.

Raising is idempotent per dedup key while the alert is open. Every step writes an AlertEvent
to the alert's history and an audit entry. Opening and resolving also queue notifications,
which monitoring.notifications sends after the transaction commits.
"""

import logging
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone

from guardrails.services import audit_record

from .models import (
    Alert,
    AlertEvent,
    AlertEventKind,
    AlertRule,
    AlertStatus,
    MonitoringSettings,
    Severity,
)

logger = logging.getLogger(__name__)

CHANGE_PERMISSION = "monitoring.change_alert"
SYSTEM_LABEL = "alerting"
# A condition raised every minute would fill the history; while an alert stays open, a
# "raised again" event is written at most this often. `occurrences` still counts every raise.
RAISED_AGAIN_EVENT_INTERVAL = timedelta(hours=1)
MAX_SILENCE = timedelta(days=30)
NOTE_MAX_LENGTH = 2000


class AlertError(Exception):
    """An alert action that cannot be carried out, with a stable `code` and an HTTP `status`."""

    def __init__(self, code: str, message: str, *, status: int = 400, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.field = field


# --- Raising and resolving -------------------------------------------------------------------


def alert_raise(
    *,
    severity: str,
    source: str,
    dedup_key: str,
    title: str,
    owner_group: str,
    runbook: str,
    detail: str = "",
    data: dict | None = None,
    rule: AlertRule | None = None,
    scope: str = "",
) -> Alert:
    """Open an alert, or update the open alert with the same `dedup_key`.

    A repeat refreshes title, detail, data and severity and counts the occurrence, so one
    condition never notifies twice. After the alert is resolved, the same key opens a new one.
    Opening queues a notification to every matching target once the transaction commits.
    """
    if severity not in Severity.values:
        raise ValueError(f"Invalid alert severity {severity!r}; use one of {Severity.values}.")

    fields = {
        "severity": severity,
        "source": source,
        "title": title,
        "detail": detail,
        "data": data or {},
        "owner_group": owner_group,
        "runbook": runbook,
        "rule": rule,
        "scope": scope,
    }
    for _attempt in range(2):
        try:
            with transaction.atomic():
                return _alert_open_or_update(dedup_key=dedup_key, fields=fields)
        except IntegrityError:
            # Another process opened the same key between our read and insert; update theirs.
            logger.info("alert raced on dedup key", extra={"dedup_key": dedup_key})
    with transaction.atomic():
        return _alert_open_or_update(dedup_key=dedup_key, fields=fields)


def alert_resolve(
    *,
    dedup_key: str,
    resolution: str = "",
    user: AbstractBaseUser | None = None,
    data: dict | None = None,
) -> Alert | None:
    """Resolve the open alert with this key; return None when none is open.

    `data` contains the figures that show the condition cleared. Targets that were sent the
    opening are sent the resolution too, even while the alert is silenced.
    """
    from .notifications import alert_notifications_queue

    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update()
            .filter(dedup_key=dedup_key, status=AlertStatus.OPEN)
            .first()
        )
        if alert is None:
            return None

        alert.status = AlertStatus.RESOLVED
        alert.resolved_at = timezone.now()
        alert.resolution = resolution
        alert.save(update_fields=["status", "resolved_at", "resolution"])

        _event_add(alert, AlertEventKind.RESOLVED, user=user, note=resolution, data=data)
        audit_record(
            action="alert.resolved",
            target_type="alert",
            target_id=alert.pk,
            actor=user,
            system_label="" if user else SYSTEM_LABEL,
            reason=resolution,
            before={"status": AlertStatus.OPEN},
            after={"status": AlertStatus.RESOLVED} | ({"data": data} if data else {}),
        )
        alert_notifications_queue(alert=alert, event=AlertEventKind.RESOLVED)
    logger.info("alert resolved", extra={"alert": alert.pk, "dedup_key": dedup_key})
    return alert


def rule_alerts_resolve(
    *, rule: AlertRule, resolution: str, user: AbstractBaseUser | None = None
) -> list[Alert]:
    """Resolve every open alert of the rule, e.g. when it is disabled; return them."""
    keys = Alert.objects.filter(rule=rule, status=AlertStatus.OPEN).order_by("pk")
    resolved = [
        alert_resolve(
            dedup_key=dedup_key,
            resolution=resolution,
            user=user,
            data={"rule": rule.pk, "rule_enabled": rule.is_enabled},
        )
        for dedup_key in keys.values_list("dedup_key", flat=True)
    ]
    return [alert for alert in resolved if alert is not None]


def _alert_open_or_update(*, dedup_key: str, fields: dict) -> Alert:
    from .notifications import alert_notifications_queue

    alert = (
        Alert.objects.select_for_update()
        .filter(dedup_key=dedup_key, status=AlertStatus.OPEN)
        .first()
    )
    if alert is not None:
        return _alert_raise_again(alert, fields)

    alert = Alert.objects.create(dedup_key=dedup_key, **fields)
    _event_add(alert, AlertEventKind.OPENED, note=alert.title, data=alert.data)
    audit_record(
        action="alert.opened",
        target_type="alert",
        target_id=alert.pk,
        system_label=SYSTEM_LABEL,
        reason=alert.title,
        after={"status": AlertStatus.OPEN, "severity": alert.severity, "data": alert.data},
    )
    alert_notifications_queue(alert=alert, event=AlertEventKind.OPENED)
    logger.warning(
        "alert opened",
        extra={"alert": alert.pk, "dedup_key": dedup_key, "severity": alert.severity},
    )
    return alert


def _alert_raise_again(alert: Alert, fields: dict) -> Alert:
    now = timezone.now()
    Alert.objects.filter(pk=alert.pk).update(
        **fields, occurrences=F("occurrences") + 1, last_raised_at=now
    )
    alert.refresh_from_db()

    last_recorded = (
        alert.events.filter(kind__in=[AlertEventKind.OPENED, AlertEventKind.RAISED_AGAIN])
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if last_recorded is None or now - last_recorded >= RAISED_AGAIN_EVENT_INTERVAL:
        _event_add(
            alert,
            AlertEventKind.RAISED_AGAIN,
            note=alert.title,
            data=alert.data | {"occurrences": alert.occurrences},
        )
    logger.info(
        "alert raised again",
        extra={"alert": alert.pk, "dedup_key": alert.dedup_key, "occurrences": alert.occurrences},
    )
    return alert


# --- People acting on an alert ---------------------------------------------------------------


def alert_may_change(user: AbstractBaseUser) -> bool:
    """Return whether the user may acknowledge, silence and remediate alerts."""
    return user.is_authenticated and user.has_perm(CHANGE_PERMISSION)


def alert_acknowledge(*, alert_id: int, user: AbstractBaseUser, note: str = "") -> Alert:
    """Record that someone is on it. Notifications continue; silence the alert to stop them."""
    _check_may_change(user)
    with transaction.atomic():
        alert = _alert_lock_open(alert_id)
        if alert.acknowledged_at is not None:
            by = alert.acknowledged_by.get_username() if alert.acknowledged_by else "someone"
            raise AlertError(
                "already_acknowledged",
                f"Alert #{alert.pk} was already acknowledged by {by} at "
                f"{alert.acknowledged_at:%Y-%m-%d %H:%M} UTC.",
                status=409,
            )

        alert.acknowledged_at = timezone.now()
        alert.acknowledged_by = user
        alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
        _event_add(alert, AlertEventKind.ACKNOWLEDGED, user=user, note=_clean_note(note))
        audit_record(
            action="alert.acknowledged",
            target_type="alert",
            target_id=alert.pk,
            actor=user,
            reason=_clean_note(note),
            before={"acknowledged": False},
            after={"acknowledged": True},
        )
    logger.info("alert acknowledged", extra={"alert": alert.pk, "user": user.pk})
    return alert


def alert_silence(
    *, alert_id: int, user: AbstractBaseUser, until: datetime, note: str = ""
) -> Alert:
    """Send no notifications about the alert until `until`; evaluation and history go on."""
    _check_may_change(user)
    now = timezone.now()
    if until <= now:
        raise AlertError("invalid", "The silence must end in the future.", field="until")
    if until - now > MAX_SILENCE:
        raise AlertError(
            "invalid",
            f"A silence may last at most {MAX_SILENCE.days} days; resolve or change the rule "
            "instead.",
            field="until",
        )

    with transaction.atomic():
        alert = _alert_lock_open(alert_id)
        before = _iso(alert.silenced_until)
        alert.silenced_until = until
        alert.silenced_by = user
        alert.save(update_fields=["silenced_until", "silenced_by"])
        _event_add(
            alert,
            AlertEventKind.SILENCED,
            user=user,
            note=_clean_note(note),
            data={"until": _iso(until)},
        )
        audit_record(
            action="alert.silenced",
            target_type="alert",
            target_id=alert.pk,
            actor=user,
            reason=_clean_note(note),
            before={"silenced_until": before},
            after={"silenced_until": _iso(until)},
        )
    logger.info("alert silenced", extra={"alert": alert.pk, "user": user.pk, "until": _iso(until)})
    return alert


def alert_unsilence(*, alert_id: int, user: AbstractBaseUser, note: str = "") -> Alert:
    """Lift a silence before it ends, so notifications resume."""
    _check_may_change(user)
    with transaction.atomic():
        alert = _alert_lock_open(alert_id)
        if not alert_is_silenced(alert):
            raise AlertError("not_silenced", f"Alert #{alert.pk} is not silenced.", status=409)

        before = _iso(alert.silenced_until)
        alert.silenced_until = None
        alert.save(update_fields=["silenced_until"])
        _event_add(alert, AlertEventKind.UNSILENCED, user=user, note=_clean_note(note))
        audit_record(
            action="alert.unsilenced",
            target_type="alert",
            target_id=alert.pk,
            actor=user,
            reason=_clean_note(note),
            before={"silenced_until": before},
            after={"silenced_until": None},
        )
    logger.info("alert silence lifted", extra={"alert": alert.pk, "user": user.pk})
    return alert


def alert_remediate(*, alert_id: int, user: AbstractBaseUser) -> Alert:
    """Run the first runbook step of the alert's rule, e.g. open a breaker or hold a channel.

    The alert stays open until its condition clears; remediating also acknowledges it.
    """
    from .remediation import remediation_run

    _check_may_change(user)
    with transaction.atomic():
        alert = _alert_lock_open(alert_id)
        if alert.rule is None:
            raise AlertError(
                "no_remediation",
                f"Alert #{alert.pk} was raised by {alert.source}, not by a rule, so it has no "
                "remediation button; follow its runbook.",
            )

        outcome = remediation_run(alert=alert, user=user)
        _event_add(
            alert, AlertEventKind.REMEDIATED, user=user, note=outcome.summary, data=outcome.data
        )
        audit_record(
            action="alert.remediated",
            target_type="alert",
            target_id=alert.pk,
            actor=user,
            reason=outcome.summary,
            before=outcome.before,
            after=outcome.data,
        )
        if alert.acknowledged_at is None:
            alert.acknowledged_at = timezone.now()
            alert.acknowledged_by = user
            alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
            _event_add(
                alert, AlertEventKind.ACKNOWLEDGED, user=user, note="Acknowledged by remediating."
            )
    logger.warning(
        "alert remediated",
        extra={"alert": alert.pk, "user": user.pk, "remediation": outcome.data.get("remediation")},
    )
    return alert


# --- Admin edits of rules, targets and settings -----------------------------------------------

# A notification address can contain a token (a chat webhook URL, for example), so its value
# never goes into the audit log. The entry records only that it changed.
HIDDEN_AUDIT_FIELDS = frozenset({"address"})
HIDDEN = "(hidden)"


def monitoring_admin_change_record(
    *,
    instance: models.Model,
    actor: AbstractBaseUser,
    verb: str,
    changed: Iterable[str] = (),
    before: dict[str, Any] | None = None,
) -> None:
    """Audit an admin edit ("created", "updated", "deleted") of an alert rule, a notification
    target or the monitoring settings, with the changed fields' values before and after.

    `before` contains the stored values of the changed fields (the form's initial data). The admin
    has already written the change, so call inside its transaction; a deletion records every
    field as it was.
    """
    if verb == "deleted":
        names = [field.name for field in instance._meta.concrete_fields if not field.primary_key]
        before_values = {name: _stored(instance, name) for name in names}
        after_values = {}
    else:
        names = list(changed)
        before_values = {name: (before or {}).get(name) for name in names}
        after_values = {name: _stored(instance, name) for name in names}

    audit_record(
        action=f"{_audit_label(instance)}.{verb}",
        target_type=_audit_label(instance),
        target_id=instance.pk,
        actor=actor,
        reason="Edited in the admin.",
        before=None if verb == "created" else _audit_values(before_values),
        after={"object": str(instance), **_audit_values(after_values)},
    )


def monitoring_settings_get_or_create() -> MonitoringSettings:
    """Return the single monitoring settings row, creating it without baseline dates if missing.

    A row without dates means the default baseline, so creating it changes nothing on the
    dashboard, and it is not audited. Two first opens at once both end up with pk 1.
    """
    row = MonitoringSettings.objects.order_by("pk").first()
    if row is None:
        row, _ = MonitoringSettings.objects.get_or_create(pk=1)
    return row


def _audit_label(instance: models.Model) -> str:
    # "alert_rule" for AlertRule, matching the other entries' snake_case target types.
    return instance._meta.verbose_name.replace(" ", "_")


def _stored(instance: models.Model, name: str) -> Any:
    # A foreign key is recorded by its id, never by loading the row.
    return getattr(instance, instance._meta.get_field(name).attname)


def _audit_values(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _audit_value(name, value) for name, value in values.items()}


def _audit_value(name: str, value: Any) -> Any:
    if name in HIDDEN_AUDIT_FIELDS:
        return HIDDEN
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, (Decimal, date, datetime)):
        return str(value)
    return value


# --- Helpers ---------------------------------------------------------------------------------


def alert_is_silenced(alert: Alert, *, now: datetime | None = None) -> bool:
    """Return whether notifications about the alert are silenced at `now`."""
    return alert.silenced_until is not None and alert.silenced_until > (now or timezone.now())


def _check_may_change(user: AbstractBaseUser) -> None:
    if not alert_may_change(user):
        raise AlertError(
            "forbidden",
            "You may view alerts but not act on them; ask an ops manager for the "
            "monitoring.change_alert permission.",
            status=403,
        )


def _alert_lock_open(alert_id: int) -> Alert:
    """Lock the alert's row; call inside a transaction. Resolved alerts cannot be changed."""
    alert = (
        Alert.objects.select_for_update(of=("self",))
        .select_related("rule", "acknowledged_by")
        .filter(pk=alert_id)
        .first()
    )
    if alert is None:
        raise AlertError("not_found", f"Alert #{alert_id} does not exist.", status=404)
    if alert.status != AlertStatus.OPEN:
        raise AlertError(
            "resolved",
            f"Alert #{alert.pk} was resolved at {alert.resolved_at:%Y-%m-%d %H:%M} UTC; "
            "there is nothing left to act on.",
            status=409,
        )
    return alert


def _event_add(
    alert: Alert,
    kind: str,
    *,
    user: AbstractBaseUser | None = None,
    note: str = "",
    data: dict | None = None,
) -> AlertEvent:
    return AlertEvent.objects.create(alert=alert, kind=kind, actor=user, note=note, data=data or {})


def _clean_note(note: str) -> str:
    return (note or "").strip()[:NOTE_MAX_LENGTH]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
