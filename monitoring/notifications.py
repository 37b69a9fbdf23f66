"""Alert notifications: who gets one, the message, and sending it with retries.

When an alert opens, every enabled target whose minimum severity and owner match gets an
AlertNotification row. When it resolves, the targets that were sent the opening and want
resolutions get one too, even while the alert is silenced, so no chat keeps showing a
cleared alert as open. Rows are sent by a Celery task queued after the transaction commits,
so evaluating rules never waits on the network. A failed send is retried with exponential
backoff up to OMSGUARD_ALERT_NOTIFY_MAX_ATTEMPTS attempts; then the row is marked failed and
the alert's history says so.

Delivery is at least once. Each attempt is claimed and counted in a committed UPDATE before
the message leaves, and its outcome is saved in a second short transaction. While a row is
pending, `sent_at` holds the start of the attempt in flight: a lease that keeps the periodic
job and a scheduled retry from sending the row at the same time. A worker that dies after
sending but before saving the outcome leaves the lease behind, and the row is sent again
once SEND_LEASE has passed.

Webhooks get a Slack-compatible JSON body ("text" and "attachments") plus an "alert" object
with the figures, for receivers that parse it.
"""

import http.client
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import URLValidator, validate_email
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from .models import (
    SEVERITY_RANK,
    Alert,
    AlertEvent,
    AlertEventKind,
    AlertNotification,
    NotificationKind,
    NotificationStatus,
    NotificationTarget,
)
from .webhook_guard import BlockedAddressError, guarded_create_connection, webhook_url_address_error

logger = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 3600
# The periodic job resends a row with no attempt after this long (its task was lost)...
NEVER_TRIED_GRACE = timedelta(minutes=2)
# ...and a row whose retry did not come after every backoff of its schedule plus this margin.
RETRY_LOST_MARGIN = timedelta(minutes=5)
PENDING_BATCH = 200
# Longer than any one attempt may take: the webhook timeout (OMSGUARD_ALERT_NOTIFY_TIMEOUT_SECONDS)
# and the SMTP timeout (EMAIL_TIMEOUT) are 10 s by default.
SEND_LEASE = timedelta(minutes=5)
ERROR_MAX_LENGTH = 2000
SEVERITY_COLORS = {"critical": "#d63638", "actionable": "#dba617", "informational": "#2271b1"}
RESOLVED_COLOR = "#00a32a"


class NotificationSendError(Exception):
    """A message that could not be delivered. `permanent` errors are not retried."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class SendOutcome:
    status: str  # "sent", "retry", "failed" or "skipped"
    attempts: int = 0


# --- Who gets a notification ------------------------------------------------------------------


def alert_notifications_queue(*, alert: Alert, event: str) -> list[AlertNotification]:
    """Create the notification rows for an alert's opening or resolution and send them on commit.

    Call inside the transaction that opened or resolved the alert.
    """
    from .services import alert_is_silenced

    # A resolution goes out even during a silence, because its targets were sent the opening
    # and would otherwise show the alert as open for good.
    if event != AlertEventKind.RESOLVED and alert_is_silenced(alert):
        logger.info("alert silenced, no notification", extra={"alert": alert.pk, "event": event})
        return []

    notifications = []
    for target in _targets_for(alert, event):
        notification, created = AlertNotification.objects.get_or_create(
            alert=alert, target=target, event=event
        )
        if created:
            notifications.append(notification)
    ids = [notification.pk for notification in notifications]
    if ids:
        transaction.on_commit(lambda: _send_enqueue(ids))
    return notifications


def _targets_for(alert: Alert, event: str):
    severities = [
        severity
        for severity, rank in SEVERITY_RANK.items()
        if rank <= SEVERITY_RANK[alert.severity]
    ]
    targets = NotificationTarget.objects.filter(
        Q(owner_group__isnull=True) | Q(owner_group__name=alert.owner_group),
        is_enabled=True,
        min_severity__in=severities,
    )
    if event == AlertEventKind.RESOLVED:
        # A resolution is news only to the targets that heard about the opening.
        targets = targets.filter(
            notify_on_resolve=True,
            notifications__alert=alert,
            notifications__event=AlertEventKind.OPENED,
        )
    return targets.order_by("pk").distinct()


def _send_enqueue(notification_ids: list[int]) -> None:
    from .notification_tasks import alert_notification_send_task

    for notification_id in notification_ids:
        try:
            alert_notification_send_task.delay(notification_id)
        except Exception:
            # The broker is down; the row stays pending for alert_notifications_send_pending.
            logger.exception(
                "alert notification not queued", extra={"notification": notification_id}
            )


# --- Sending ---------------------------------------------------------------------------------


def alert_notification_send(*, notification_id: int) -> SendOutcome:
    """Make one delivery attempt of a pending notification and record its outcome.

    Call outside a transaction, so the claim commits before the message leaves. Returns
    "retry" when the attempt failed and attempts remain (the caller schedules the next one),
    and "skipped" when the row is not pending or another worker holds its lease.
    """
    claimed_at = _attempt_claim(notification_id)
    if claimed_at is None:
        return SendOutcome("skipped")

    notification = AlertNotification.objects.select_related("alert", "alert__rule", "target").get(
        pk=notification_id
    )
    try:
        _deliver(notification.target, notification.alert, notification.event)
    except NotificationSendError as error:
        return _attempt_failed(notification, error, claimed_at=claimed_at)
    return _attempt_sent(notification, claimed_at=claimed_at)


def _attempt_claim(notification_id: int) -> datetime | None:
    """Count an attempt and take the row's lease in one conditional UPDATE; None if taken."""
    now = timezone.now()
    with transaction.atomic():
        claimed = AlertNotification.objects.filter(
            Q(sent_at__isnull=True) | Q(sent_at__lte=now - SEND_LEASE),
            pk=notification_id,
            status=NotificationStatus.PENDING,
        ).update(attempts=F("attempts") + 1, sent_at=now)
    return now if claimed else None


def _holding_lease(notification: AlertNotification, claimed_at: datetime):
    """Select the row only while the attempt claimed at `claimed_at` still has its lease."""
    return AlertNotification.objects.filter(
        pk=notification.pk, status=NotificationStatus.PENDING, sent_at=claimed_at
    )


def _attempt_sent(notification: AlertNotification, *, claimed_at: datetime) -> SendOutcome:
    extra = {
        "notification": notification.pk,
        "alert": notification.alert_id,
        "target": notification.target_id,
        "attempt": notification.attempts,
    }
    with transaction.atomic():
        saved = _holding_lease(notification, claimed_at).update(
            status=NotificationStatus.SENT, sent_at=timezone.now(), last_error=""
        )
        if not saved:
            # The attempt outlasted SEND_LEASE and another worker took the row over.
            logger.warning("alert notification sent after its lease ended", extra=extra)
            return SendOutcome("sent", notification.attempts)
        AlertEvent.objects.create(
            alert=notification.alert,
            kind=AlertEventKind.NOTIFIED,
            note=f"{notification.event.capitalize()} message sent to {notification.target.name}.",
            data={
                "notification": notification.pk,
                "target": notification.target.name,
                "attempts": notification.attempts,
            },
        )
    logger.info("alert notification sent", extra=extra)
    return SendOutcome("sent", notification.attempts)


def _attempt_failed(
    notification: AlertNotification, error: NotificationSendError, *, claimed_at: datetime
) -> SendOutcome:
    max_attempts = settings.OMSGUARD_ALERT_NOTIFY_MAX_ATTEMPTS
    last_error = str(error)[:ERROR_MAX_LENGTH]
    gives_up = error.permanent or notification.attempts >= max_attempts
    extra = {
        "notification": notification.pk,
        "alert": notification.alert_id,
        "target": notification.target_id,
        "attempt": notification.attempts,
        "max_attempts": max_attempts,
        "error": last_error,
    }
    with transaction.atomic():
        saved = _holding_lease(notification, claimed_at).update(
            status=NotificationStatus.FAILED if gives_up else NotificationStatus.PENDING,
            sent_at=None,
            last_error=last_error,
        )
        if not saved:
            logger.warning("alert notification failed after its lease ended", extra=extra)
            return SendOutcome("skipped", notification.attempts)
        if gives_up:
            AlertEvent.objects.create(
                alert=notification.alert,
                kind=AlertEventKind.NOTIFICATION_FAILED,
                note=(
                    f"{notification.event.capitalize()} message to {notification.target.name} "
                    f"failed after {notification.attempts} attempts: {last_error}"
                ),
                data={
                    "notification": notification.pk,
                    "target": notification.target.name,
                    "attempts": notification.attempts,
                },
            )
    if not gives_up:
        logger.warning("alert notification failed, will retry", extra=extra)
        return SendOutcome("retry", notification.attempts)
    logger.error("alert notification failed", extra=extra)
    return SendOutcome("failed", notification.attempts)


def notification_retry_countdown(attempts: int) -> int:
    """Seconds to wait after the `attempts`-th failed attempt: 30, 60, 120, ... up to an hour."""
    return min(RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), RETRY_MAX_SECONDS)


def alert_notifications_send_pending(*, now: datetime | None = None) -> list[int]:
    """Make one attempt for every pending notification whose task was lost; return the ids sent.

    A row counts as lost when it had no attempt for NEVER_TRIED_GRACE (the broker was down at
    commit), or when its retries should all have run by now (the worker died). A row whose
    attempt is in flight is left to it until its lease ends. Scheduling this every few minutes
    makes every notification go out in the end.
    """
    now = now or timezone.now()
    max_attempts = settings.OMSGUARD_ALERT_NOTIFY_MAX_ATTEMPTS
    every_backoff = timedelta(
        seconds=sum(notification_retry_countdown(n) for n in range(1, max_attempts))
    )
    due = list(
        AlertNotification.objects.filter(status=NotificationStatus.PENDING)
        .filter(
            Q(attempts=0, created_at__lte=now - NEVER_TRIED_GRACE)
            | Q(attempts__gt=0, created_at__lte=now - every_backoff - RETRY_LOST_MARGIN)
        )
        .filter(Q(sent_at__isnull=True) | Q(sent_at__lte=now - SEND_LEASE))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:PENDING_BATCH]
    )
    sent = [pk for pk in due if alert_notification_send(notification_id=pk).status == "sent"]
    if due:
        logger.info(
            "pending alert notifications retried", extra={"due": len(due), "sent": len(sent)}
        )
    return sent


def notification_test_send(*, target: NotificationTarget) -> None:
    """Send a test message to the target now; raise NotificationSendError when it fails."""
    subject = "[OMS Guard] Test notification"
    text = (
        f"This is a test message from OMS Guard to the notification target {target.name!r}. "
        "Alerts will arrive here like this."
    )
    if target.kind == NotificationKind.EMAIL:
        _email_send(target.address, subject, text)
        return
    _webhook_post(target.address, {"text": text, "alert": None, "test": True})


def _deliver(target: NotificationTarget, alert: Alert, event: str) -> None:
    if target.kind == NotificationKind.EMAIL:
        subject, body = email_message(alert, event)
        _email_send(target.address, subject, body)
    elif target.kind == NotificationKind.WEBHOOK:
        _webhook_post(target.address, webhook_body(alert, event))
    else:
        raise NotificationSendError(
            f"Unknown notification kind {target.kind!r}; use one of {NotificationKind.values}.",
            permanent=True,
        )


def _email_send(address: str, subject: str, body: str) -> None:
    if notification_address_error(NotificationKind.EMAIL, address):
        raise NotificationSendError(f"Invalid email address {address!r}.", permanent=True)
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [address], fail_silently=False)
    except Exception as error:
        raise NotificationSendError(f"Email failed: {type(error).__name__}: {error}") from error


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would turn the POST into a GET and lose the body, and following it would
    # reach a URL that no one checked when the target was saved. Count it as a failure.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = guarded_create_connection


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    # HTTPSConnection.connect opens the TCP connection through HTTPConnection.connect, so the
    # same check applies, and TLS still verifies the certificate against the URL's host name.
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = guarded_create_connection


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_GuardedHTTPConnection, req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_GuardedHTTPSConnection, req, context=self._context)


# ProxyHandler({}) ignores HTTP(S)_PROXY in the environment, because through a proxy the
# connection goes to the proxy's address and the internal-address check could not see where
# the POST really goes.
_opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), _NoRedirects, _GuardedHTTPHandler, _GuardedHTTPSHandler
)


def _webhook_post(url: str, body: dict) -> None:
    """POST the JSON body; any response other than 2xx is a failure.

    Error texts name the host only, because webhook URLs often carry a secret token. An
    internal address (see webhook_guard) is a permanent failure, without a retry.
    """
    if _webhook_url_invalid(url):
        raise NotificationSendError("The webhook URL is not a valid http(s) URL.", permanent=True)

    host = urlsplit(url).netloc.rpartition("@")[2]
    # Targets saved before the save-time check existed may still contain an internal address.
    blocked = webhook_url_address_error(url)
    if blocked:
        raise NotificationSendError(f"Webhook at {host} rejected: {blocked}", permanent=True)

    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "OMS Guard alerts"},
        method="POST",
    )
    timeout = settings.OMSGUARD_ALERT_NOTIFY_TIMEOUT_SECONDS
    try:
        with _opener.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        raise NotificationSendError(
            f"Webhook at {host} responded with HTTP {error.code}."
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, BlockedAddressError):
            raise NotificationSendError(
                f"Webhook at {host} rejected: {reason}.", permanent=True
            ) from error
        raise NotificationSendError(f"Webhook at {host} failed: {reason}.") from error
    if not 200 <= status < 300:
        raise NotificationSendError(f"Webhook at {host} responded with HTTP {status}.")


def _webhook_url_invalid(url: str) -> bool:
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        return True
    return False


def notification_address_error(kind: str, address: str) -> str | None:
    """Why the address cannot be used for the kind, or None when it can."""
    try:
        if kind == NotificationKind.EMAIL:
            validate_email(address)
        elif kind == NotificationKind.WEBHOOK:
            URLValidator(schemes=["http", "https"])(address)
        else:
            return f"Unknown notification kind {kind!r}."
    except ValidationError:
        if kind == NotificationKind.EMAIL:
            return "Enter a valid email address."
        return "Enter a valid http:// or https:// URL."
    if kind == NotificationKind.WEBHOOK:
        return webhook_url_address_error(address)
    return None


# --- The message ---------------------------------------------------------------------------


def alert_url(alert: Alert) -> str:
    """Return the alert page's URL at the address people use (OMSGUARD_PUBLIC_URL)."""
    return settings.OMSGUARD_PUBLIC_URL + reverse("alerts:detail", args=[alert.pk])


def runbook_first_step(runbook: str) -> str:
    """Return the runbook's first step without its number, e.g. "Hold the channel's orders ..."."""
    for line in runbook.splitlines():
        line = line.strip()
        if line:
            number, dot, rest = line.partition(".")
            return rest.strip() if dot and number.strip().isdigit() else line
    return ""


def email_message(alert: Alert, event: str) -> tuple[str, str]:
    """Build the subject and plain-text body of the email about an alert's opening or resolution."""
    resolved = event == AlertEventKind.RESOLVED
    prefix = "Resolved" if resolved else alert.severity.capitalize()
    subject = f"[OMS Guard] {prefix}: {alert.title}"[:250]

    lines = [
        f"Alert #{alert.pk} {'resolved' if resolved else 'opened'}: {alert.title}",
        "",
        f"Severity: {alert.severity}",
        f"Owner: {alert.owner_group}",
        f"Scope: {alert.scope or 'all'}",
    ]
    if alert.rule_id:
        lines.append(f"Rule: {alert.rule.name}")
    if resolved and alert.resolution:
        lines.append(f"Resolution: {alert.resolution}")
    if alert.detail:
        lines += ["", alert.detail]
    figures = _figures(alert)
    if figures:
        lines += ["", "Figures:"] + [f"  {key}: {value}" for key, value in figures.items()]
    if not resolved:
        lines += ["", "Runbook:", alert.runbook]
    lines += ["", f"Open the alert: {alert_url(alert)}"]
    return subject, "\n".join(lines) + "\n"


def webhook_body(alert: Alert, event: str) -> dict:
    """Build the webhook's JSON: Slack's "text" and "attachments", plus the alert as data."""
    resolved = event == AlertEventKind.RESOLVED
    url = alert_url(alert)
    step_one = runbook_first_step(alert.runbook)
    if resolved:
        text = f"Resolved: {alert.title}"
        if alert.resolution:
            text += f" ({alert.resolution})"
    else:
        text = f"[{alert.severity.upper()}] {alert.title}\nStep 1: {step_one}"
    text += f"\n<{url}|Open alert #{alert.pk}>"

    attachment_fields = [
        {"title": "Severity", "value": alert.severity, "short": True},
        {"title": "Owner", "value": alert.owner_group, "short": True},
        {"title": "Scope", "value": alert.scope or "all", "short": True},
        {"title": "Status", "value": alert.status, "short": True},
    ]
    return {
        "text": text,
        "attachments": [
            {
                "color": RESOLVED_COLOR if resolved else SEVERITY_COLORS.get(alert.severity),
                "title": alert.title,
                "title_link": url,
                "text": alert.detail,
                "fields": attachment_fields,
                "footer": "OMS Guard",
            }
        ],
        "alert": {
            "id": alert.pk,
            "event": event,
            "severity": alert.severity,
            "title": alert.title,
            "scope": alert.scope,
            "owner": alert.owner_group,
            "rule": {"id": alert.rule_id, "name": alert.rule.name} if alert.rule_id else None,
            "runbook_step_1": step_one,
            "url": url,
            "status": alert.status,
            "occurrences": alert.occurrences,
            "opened_at": alert.created_at.isoformat(),
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "resolution": alert.resolution,
            "figures": alert.data,
        },
    }


def _figures(alert: Alert) -> dict:
    """Return the alert's figures that read well in an email: plain values, not nested objects."""
    return {
        key: value
        for key, value in (alert.data or {}).items()
        if isinstance(value, (str, int, float)) and value != ""
    }
