"""Raising and resolving alerts. Raising is idempotent per dedup key while the alert is open."""

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from guardrails.services import audit_record

from .models import Alert, AlertStatus, Severity

logger = logging.getLogger(__name__)


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
) -> Alert:
    """Open an alert, or update the open alert with the same `dedup_key`.

    A repeat refreshes title, detail, data and severity and counts the occurrence, so one
    condition never pages twice. After the alert is resolved, the same key opens a new one.
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
    *, dedup_key: str, resolution: str = "", user: AbstractBaseUser | None = None
) -> Alert | None:
    """Resolve the open alert with this key; return None when none is open."""
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

        audit_record(
            action="alert.resolved",
            target_type="alert",
            target_id=alert.pk,
            actor=user,
            system_label="" if user else "alerting",
            reason=resolution,
            before={"status": AlertStatus.OPEN},
            after={"status": AlertStatus.RESOLVED},
        )
    logger.info("alert resolved", extra={"alert": alert.pk, "dedup_key": dedup_key})
    return alert


def _alert_open_or_update(*, dedup_key: str, fields: dict) -> Alert:
    alert = (
        Alert.objects.select_for_update()
        .filter(dedup_key=dedup_key, status=AlertStatus.OPEN)
        .first()
    )
    if alert is not None:
        Alert.objects.filter(pk=alert.pk).update(
            **fields, occurrences=F("occurrences") + 1, last_raised_at=timezone.now()
        )
        alert.refresh_from_db()
        logger.info(
            "alert raised again",
            extra={"alert": alert.pk, "dedup_key": dedup_key, "occurrences": alert.occurrences},
        )
        return alert

    alert = Alert.objects.create(dedup_key=dedup_key, **fields)
    logger.warning(
        "alert opened",
        extra={"alert": alert.pk, "dedup_key": dedup_key, "severity": alert.severity},
    )
    return alert
