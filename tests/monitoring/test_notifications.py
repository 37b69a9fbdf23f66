"""Alert notifications: who gets them, the message shapes, sending on commit, retries."""

import json
import threading
import time
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.core import mail
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from monitoring.models import (
    Alert,
    AlertEvent,
    AlertNotification,
    AlertRule,
    NotificationKind,
    NotificationStatus,
    NotificationTarget,
    Severity,
)
from monitoring.notifications import (
    SEND_LEASE,
    alert_notification_send,
    alert_notifications_send_pending,
    notification_retry_countdown,
    webhook_body,
)
from monitoring.services import alert_raise, alert_resolve

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://guard.example.com"
TEST_PORTS = range(8723, 8730)


@pytest.fixture(autouse=True)
def _notification_settings(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.OMSGUARD_PUBLIC_URL = PUBLIC_URL
    settings.OMSGUARD_ALERT_NOTIFY_MAX_ATTEMPTS = 4
    settings.OMSGUARD_ALERT_NOTIFY_TIMEOUT_SECONDS = 2
    # The test webhook servers listen on 127.0.0.1, which alert webhooks may not reach unless
    # this setting allows it.
    settings.OMSGUARD_NOTIFY_ALLOWED_NETWORKS = ["127.0.0.1/32"]


class WebhookServer:
    """A real HTTP server on 127.0.0.1 that responds with the given statuses in turn."""

    def __init__(self, statuses: list[int], *, delay: float = 0, on_request=None):
        self.statuses = list(statuses)
        self.delay = delay
        self.on_request = on_request
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the name http.server calls
                length = int(self.headers["Content-Length"])
                server.requests.append(
                    {
                        "path": self.path,
                        "content_type": self.headers["Content-Type"],
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                if server.on_request is not None:
                    server.on_request()
                time.sleep(server.delay)
                status = server.statuses.pop(0) if len(server.statuses) > 1 else server.statuses[0]
                try:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b"ok" if status < 300 else b"nope")
                except BrokenPipeError:
                    pass  # the client gave up waiting (the timeout test)

            def log_message(self, *args):
                pass

        self.httpd = self._bind(Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def _bind(handler) -> ThreadingHTTPServer:
        for port in TEST_PORTS:
            try:
                return ThreadingHTTPServer(("127.0.0.1", port), handler)
            except OSError:
                continue
        raise RuntimeError(f"No free port in {TEST_PORTS} for the test webhook server.")

    def url(self, path: str = "/hooks/T0001/s3cr3t-token") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> "WebhookServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make_rule(**overrides) -> AlertRule:
    owner, _ = Group.objects.get_or_create(name="ops_manager")
    fields = {
        "name": "Duplicates",
        "kpi": "duplicate_shipment_rate",
        "kind": "rate_per_1000",
        "threshold": Decimal("5"),
        "scope": "per_channel",
        "severity": Severity.CRITICAL,
        "owner_group": owner,
        "runbook": "1. Hold the channel's orders with the button on this alert.\n2. Look.",
        "remediation": "hold_channel",
    }
    return AlertRule.objects.create(**(fields | overrides))


def raise_alert(*, severity: str = Severity.CRITICAL, owner: str = "ops_manager", key="k") -> Alert:
    rule = AlertRule.objects.filter(name=f"Duplicates {key}").first()
    rule = rule or make_rule(name=f"Duplicates {key}", severity=severity)
    return alert_raise(
        severity=severity,
        source="alert_rules",
        dedup_key=f"rule:{rule.pk}:channel=shop",
        title="Duplicate shipments (channel shop): 8 per 1,000 orders, above 5 per 1,000 orders",
        owner_group=owner,
        runbook=rule.runbook,
        detail="Rule 'Duplicates', measured over 2 hours up to now.",
        data={"value": "8", "threshold": "5", "sample": 250, "scope": {"channel": "shop"}},
        rule=rule,
        scope="channel=shop",
    )


def target(kind: str = NotificationKind.EMAIL, address: str = "ops@example.com", **overrides):
    fields = {
        "name": f"{kind} target {NotificationTarget.objects.count() + 1}",
        "kind": kind,
        "address": address,
        "min_severity": Severity.INFORMATIONAL,
    }
    return NotificationTarget.objects.create(**(fields | overrides))


# --- Email -----------------------------------------------------------------------------------


def test_email_sent_on_open(django_capture_on_commit_callbacks):
    target()

    with django_capture_on_commit_callbacks(execute=True):
        alert = raise_alert()
        assert mail.outbox == []  # nothing leaves before the commit

    [message] = mail.outbox
    assert message.to == ["ops@example.com"]
    assert message.subject == (
        "[OMS Guard] Critical: Duplicate shipments (channel shop): 8 per 1,000 orders, above "
        "5 per 1,000 orders"
    )
    assert f"Alert #{alert.pk} opened" in message.body
    assert "Owner: ops_manager" in message.body
    assert "Scope: channel=shop" in message.body
    assert "  value: 8" in message.body
    assert "1. Hold the channel's orders with the button on this alert." in message.body
    assert f"Open the alert: {PUBLIC_URL}/alerts/{alert.pk}/" in message.body
    notification = AlertNotification.objects.get()
    assert (notification.status, notification.attempts) == (NotificationStatus.SENT, 1)
    assert alert.events.filter(kind="notified").count() == 1


def test_email_on_resolve(django_capture_on_commit_callbacks):
    target()
    with django_capture_on_commit_callbacks(execute=True):
        alert = raise_alert()
    with django_capture_on_commit_callbacks(execute=True):
        alert_resolve(dedup_key=alert.dedup_key, resolution="Cleared: 3.1 per 1,000 orders.")

    assert [message.subject for message in mail.outbox][1] == (
        "[OMS Guard] Resolved: Duplicate shipments (channel shop): 8 per 1,000 orders, above "
        "5 per 1,000 orders"
    )
    assert "Resolution: Cleared: 3.1 per 1,000 orders." in mail.outbox[1].body


def test_raised_again_sends_nothing(django_capture_on_commit_callbacks):
    target()
    with django_capture_on_commit_callbacks(execute=True):
        raise_alert()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        raise_alert()

    assert callbacks == []
    assert len(mail.outbox) == 1


def test_targets_match_severity_owner_enabled(django_capture_on_commit_callbacks):
    cs, _ = Group.objects.get_or_create(name="cs_manager")
    target(address="all@example.com")
    target(address="critical@example.com", min_severity=Severity.CRITICAL)
    target(address="cs@example.com", owner_group=cs)
    target(address="off@example.com", is_enabled=False)

    with django_capture_on_commit_callbacks(execute=True):
        raise_alert(severity=Severity.ACTIONABLE)

    assert sorted(message.to[0] for message in mail.outbox) == ["all@example.com"]


def test_resolve_only_to_targets_told_of_opening(django_capture_on_commit_callbacks):
    target(address="told@example.com")
    target(address="quiet@example.com", notify_on_resolve=False)
    with django_capture_on_commit_callbacks(execute=True):
        alert = raise_alert()
    target(address="late@example.com")

    with django_capture_on_commit_callbacks(execute=True):
        alert_resolve(dedup_key=alert.dedup_key, resolution="Cleared.")

    resolved = AlertNotification.objects.filter(event="resolved")
    assert [row.target.address for row in resolved] == ["told@example.com"]


def test_rollback_sends_nothing(django_capture_on_commit_callbacks):
    target()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        raise_alert()
        raise RuntimeError("the evaluation failed after raising")

    assert callbacks == []
    assert mail.outbox == []
    assert not Alert.objects.exists()
    assert not AlertNotification.objects.exists()


# --- Webhook ---------------------------------------------------------------------------------


def test_webhook_retried_until_accepted(django_capture_on_commit_callbacks):
    with WebhookServer([500, 503, 200]) as server:
        target(NotificationKind.WEBHOOK, server.url())
        with django_capture_on_commit_callbacks(execute=True):
            alert = raise_alert()
            assert server.requests == []

    assert len(server.requests) == 3
    notification = AlertNotification.objects.get()
    assert notification.status == NotificationStatus.SENT
    assert notification.attempts == 3
    assert notification.last_error == ""
    assert alert.events.get(kind="notified").data["attempts"] == 3
    assert server.requests[0]["content_type"] == "application/json"
    assert server.requests[2]["body"] == server.requests[0]["body"]


def test_webhook_body_shape(django_capture_on_commit_callbacks):
    with WebhookServer([200]) as server:
        target(NotificationKind.WEBHOOK, server.url())
        with django_capture_on_commit_callbacks(execute=True):
            alert = raise_alert()

    body = server.requests[0]["body"]
    url = f"{PUBLIC_URL}/alerts/{alert.pk}/"
    assert body["text"] == (
        "[CRITICAL] Duplicate shipments (channel shop): 8 per 1,000 orders, above 5 per 1,000 "
        "orders\nStep 1: Hold the channel's orders with the button on this alert.\n"
        f"<{url}|Open alert #{alert.pk}>"
    )
    [attachment] = body["attachments"]
    assert attachment["color"] == "#d63638"
    assert attachment["title_link"] == url
    assert {field["title"] for field in attachment["fields"]} == {
        "Severity",
        "Owner",
        "Scope",
        "Status",
    }
    assert body["alert"] == {
        "id": alert.pk,
        "event": "opened",
        "severity": "critical",
        "title": alert.title,
        "scope": "channel=shop",
        "owner": "ops_manager",
        "rule": {"id": alert.rule_id, "name": alert.rule.name},
        "runbook_step_1": "Hold the channel's orders with the button on this alert.",
        "url": url,
        "status": "open",
        "occurrences": 1,
        "opened_at": alert.created_at.isoformat(),
        "resolved_at": None,
        "resolution": "",
        "figures": {"value": "8", "threshold": "5", "sample": 250, "scope": {"channel": "shop"}},
    }


def test_resolved_body_is_green():
    alert = raise_alert()
    alert_resolve(dedup_key=alert.dedup_key, resolution="Cleared: 3.1 per 1,000 orders.")
    alert.refresh_from_db()

    body = webhook_body(alert, "resolved")

    assert body["text"].startswith(f"Resolved: {alert.title} (Cleared: 3.1 per 1,000 orders.)")
    assert body["attachments"][0]["color"] == "#00a32a"
    assert body["alert"]["status"] == "resolved"


def test_webhook_fails_after_max_attempts(django_capture_on_commit_callbacks):
    with WebhookServer([500]) as server:
        target(NotificationKind.WEBHOOK, server.url())
        with django_capture_on_commit_callbacks(execute=True):
            alert = raise_alert()

    assert len(server.requests) == 4
    notification = AlertNotification.objects.get()
    assert notification.status == NotificationStatus.FAILED
    assert notification.attempts == 4
    assert notification.last_error == f"Webhook at 127.0.0.1:{server.port} responded with HTTP 500."
    failed = alert.events.get(kind="notification_failed")
    assert failed.data["attempts"] == 4
    assert "s3cr3t-token" not in failed.note


def test_webhook_timeout_is_failure(settings, django_capture_on_commit_callbacks):
    settings.OMSGUARD_ALERT_NOTIFY_TIMEOUT_SECONDS = 1
    settings.OMSGUARD_ALERT_NOTIFY_MAX_ATTEMPTS = 1
    with WebhookServer([200], delay=2) as server:
        target(NotificationKind.WEBHOOK, server.url())
        with django_capture_on_commit_callbacks(execute=True):
            raise_alert()

    notification = AlertNotification.objects.get()
    assert notification.status == NotificationStatus.FAILED
    assert "timed out" in notification.last_error


def test_invalid_webhook_url_fails_at_once(django_capture_on_commit_callbacks):
    target(NotificationKind.WEBHOOK, "ftp://127.0.0.1/hook")

    with django_capture_on_commit_callbacks(execute=True):
        raise_alert()

    notification = AlertNotification.objects.get()
    assert (notification.status, notification.attempts) == (NotificationStatus.FAILED, 1)
    assert notification.last_error == "The webhook URL is not a valid http(s) URL."


def test_retry_countdown_doubles():
    assert [notification_retry_countdown(n) for n in range(1, 6)] == [30, 60, 120, 240, 480]
    assert notification_retry_countdown(20) == 3600


# --- Lost tasks ------------------------------------------------------------------------------


def test_pending_resent_when_task_lost(django_capture_on_commit_callbacks):
    target()
    broker_down = mock.patch(
        "monitoring.notification_tasks.alert_notification_send_task.delay",
        side_effect=ConnectionError("broker down"),
    )
    with broker_down, django_capture_on_commit_callbacks(execute=True):
        raise_alert()
    notification = AlertNotification.objects.get()
    assert notification.status == NotificationStatus.PENDING

    assert alert_notifications_send_pending() == []  # too recent: its task may still run
    sent = alert_notifications_send_pending(now=timezone.now() + timedelta(minutes=3))

    assert sent == [notification.pk]
    assert len(mail.outbox) == 1
    notification.refresh_from_db()
    assert notification.status == NotificationStatus.SENT


def test_pending_with_retry_scheduled_left_alone():
    target()
    raise_alert()
    AlertNotification.objects.update(attempts=1)

    # With 4 attempts the retries are due within 30 + 60 + 120 s, plus a 5-minute margin.
    assert alert_notifications_send_pending(now=timezone.now() + timedelta(minutes=8)) == []
    assert len(alert_notifications_send_pending(now=timezone.now() + timedelta(minutes=9))) == 1


# --- Claiming an attempt ----------------------------------------------------------------------


def test_lost_outcome_not_resent_within_lease():
    with WebhookServer([200]) as server:
        target(NotificationKind.WEBHOOK, server.url())
        raise_alert()  # the test's transaction never commits, so nothing is sent yet
        notification = AlertNotification.objects.get()
        outcome_lost = mock.patch.object(
            AlertEvent.objects,
            "create",
            side_effect=OperationalError("server closed the connection"),
        )
        with outcome_lost, pytest.raises(OperationalError):
            alert_notification_send(notification_id=notification.pk)

        again = alert_notification_send(notification_id=notification.pk)
        pending_soon = alert_notifications_send_pending(now=timezone.now() + timedelta(minutes=9))
        assert (again.status, pending_soon, len(server.requests)) == ("skipped", [], 1)
        notification.refresh_from_db()
        assert (notification.status, notification.attempts) == (NotificationStatus.PENDING, 1)

        # Once the lease has passed, the periodic job sends it again: delivery is at least once.
        with time_machine.travel(timezone.now() + SEND_LEASE + timedelta(minutes=5)):
            sent = alert_notifications_send_pending()

    assert sent == [notification.pk]
    assert len(server.requests) == 2
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (NotificationStatus.SENT, 2)


def test_failed_attempt_releases_lease():
    with WebhookServer([500, 200]) as server:
        target(NotificationKind.WEBHOOK, server.url())
        raise_alert()
        notification = AlertNotification.objects.get()

        first = alert_notification_send(notification_id=notification.pk)
        notification.refresh_from_db()
        assert (first.status, notification.sent_at, notification.attempts) == ("retry", None, 1)
        second = alert_notification_send(notification_id=notification.pk)

    assert second.status == "sent"
    assert len(server.requests) == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_claim_committed_before_send():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL to read the row from another connection mid-send")
    seen: list[tuple] = []

    def during_request() -> None:
        # The server's thread has its own database connection, so it reads committed rows only.
        row = AlertNotification.objects.values_list("status", "attempts").get()
        seen.append(row)
        connection.close()

    with WebhookServer([200], on_request=during_request) as server:
        target(NotificationKind.WEBHOOK, server.url())
        with transaction.atomic():
            raise_alert()
        # Committed: the on-commit task ran (eagerly) and sent the message.

    assert seen == [(NotificationStatus.PENDING, 1)]
    assert AlertNotification.objects.get().status == NotificationStatus.SENT


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_pending_job_and_retry_send_once():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real concurrency between connections")
    with WebhookServer([200], delay=1) as server:
        target(NotificationKind.WEBHOOK, server.url())
        broker_down = mock.patch(
            "monitoring.notification_tasks.alert_notification_send_task.delay",
            side_effect=ConnectionError("broker down"),
        )
        with broker_down, transaction.atomic():
            raise_alert()
        notification = AlertNotification.objects.get()
        AlertNotification.objects.update(attempts=1)  # a retry is scheduled after attempt 1
        barrier = threading.Barrier(2)
        outcomes: list[str] = []
        errors: list[BaseException] = []

        def run(send) -> None:
            try:
                barrier.wait(timeout=10)
                outcomes.append(send())
            except BaseException as error:  # re-raised in the main thread
                errors.append(error)
            finally:
                connection.close()

        pending_job = threading.Thread(
            target=run,
            args=(
                lambda: (
                    "sent"
                    if alert_notifications_send_pending(now=timezone.now() + timedelta(hours=1))
                    else "skipped"
                ),
            ),
        )
        retry = threading.Thread(
            target=run,
            args=(lambda: alert_notification_send(notification_id=notification.pk).status,),
        )
        for thread in (pending_job, retry):
            thread.start()
        for thread in (pending_job, retry):
            thread.join(timeout=60)

    assert errors == []
    assert sorted(outcomes) == ["sent", "skipped"]
    assert len(server.requests) == 1
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == (NotificationStatus.SENT, 2)


# --- Targets in the admin --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "address", "error"),
    [
        ("email", "not-an-address", "Enter a valid email address."),
        ("webhook", "ftp://hooks.example.com/x", "Enter a valid http:// or https:// URL."),
        ("webhook", "javascript:alert(1)", "Enter a valid http:// or https:// URL."),
    ],
)
def test_target_form_rejects_address(kind, address, error):
    from monitoring.admin import NotificationTargetForm

    form = NotificationTargetForm(
        data={"name": "t", "kind": kind, "address": address, "min_severity": "actionable"}
    )

    assert not form.is_valid()
    assert form.errors["address"] == [error]


def test_admin_sends_test_notification(admin_client):
    email = target(address="ops@example.com")
    with WebhookServer([500]) as server:
        webhook = target(NotificationKind.WEBHOOK, server.url())
        response = admin_client.post(
            "/admin/monitoring/notificationtarget/",
            {"action": "send_test", "_selected_action": [email.pk, webhook.pk]},
            follow=True,
        )

    content = response.content.decode()
    assert f"Test message sent to {email.name}." in content
    assert f"Test to {webhook.name} failed: Webhook at 127.0.0.1:{server.port} responded" in content
    assert mail.outbox[0].subject == "[OMS Guard] Test notification"
    assert server.requests[0]["body"]["test"] is True


def test_test_notification_needs_change_permission(client):
    from django.contrib.auth.models import Permission

    from tests.guardrails.conftest import make_staff_user

    viewer = make_staff_user("vera", "cs_agent")
    viewer.user_permissions.add(Permission.objects.get(codename="view_notificationtarget"))
    client.force_login(viewer)
    email = target(address="ops@example.com")

    page = client.get("/admin/monitoring/notificationtarget/")
    response = client.post(
        "/admin/monitoring/notificationtarget/",
        {"action": "send_test", "_selected_action": [email.pk]},
        follow=True,
    )

    assert page.status_code == 200
    assert "send_test" not in page.content.decode()
    assert response.status_code == 200
    assert mail.outbox == []


def test_ops_manager_sends_test_notification(client):
    from tests.guardrails.conftest import make_staff_user

    client.force_login(make_staff_user("olivia", "ops_manager"))
    email = target(address="ops@example.com")

    response = client.post(
        "/admin/monitoring/notificationtarget/",
        {"action": "send_test", "_selected_action": [email.pk]},
        follow=True,
    )

    assert f"Test message sent to {email.name}." in response.content.decode()
    assert len(mail.outbox) == 1


def test_webhook_redirect_is_failure(settings, django_capture_on_commit_callbacks):
    settings.OMSGUARD_ALERT_NOTIFY_MAX_ATTEMPTS = 1
    with WebhookServer([302]) as server:
        target(NotificationKind.WEBHOOK, server.url())
        with django_capture_on_commit_callbacks(execute=True):
            raise_alert()

    notification = AlertNotification.objects.get()
    assert notification.status == NotificationStatus.FAILED
    assert notification.last_error == f"Webhook at 127.0.0.1:{server.port} responded with HTTP 302."
    assert len(server.requests) == 1
