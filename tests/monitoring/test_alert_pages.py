"""The alert list and alert page, their HTMX actions and who may see and act."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from guardrails.models import Breaker, BreakerState
from monitoring.models import (
    Alert,
    AlertNotification,
    AlertRule,
    NotificationKind,
    NotificationStatus,
    NotificationTarget,
    Severity,
)
from monitoring.services import (
    alert_acknowledge,
    alert_raise,
    alert_resolve,
    alert_silence,
)
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def ops(db) -> User:
    return make_user("olivia", "ops_manager")


@pytest.fixture
def leader(db) -> User:
    return make_user("lee", "leadership")


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_rule(name: str = "Carrier mix", **overrides) -> AlertRule:
    owner, _ = Group.objects.get_or_create(name="ops_manager")
    fields = {
        "name": name,
        "kpi": "carrier_mix",
        "kind": "baseline_deviation",
        "threshold": Decimal("30"),
        "severity": Severity.ACTIONABLE,
        "owner_group": owner,
        "runbook": "1. Open the carrier selection breaker.\n2. Compare the mix.\n3. Close it.",
        "remediation": "open_breaker",
        "remediation_target": "select_carrier",
    }
    return AlertRule.objects.create(**(fields | overrides))


def raise_alert(
    key: str = "a", *, severity: str = Severity.ACTIONABLE, owner: str = "ops_manager", rule=None
) -> Alert:
    rule = rule or AlertRule.objects.filter(name="Carrier mix").first() or make_rule()
    return alert_raise(
        severity=severity,
        source="alert_rules",
        dedup_key=f"rule:{rule.pk}:{key}",
        title=f"Carrier mix {key}: 50 % off its 7-day baseline, more than 30 %",
        owner_group=owner,
        runbook=rule.runbook,
        data={"deviation_percent": "50", "shares": {"ups": "0.6", "dhl": "0.4"}},
        rule=rule,
        scope=key,
    )


def titles(response) -> list[str]:
    return [alert.title for alert in response.context["page"]]


# --- List ------------------------------------------------------------------------------------


def test_list_orders_open_by_severity(ops):
    old_info = raise_alert("info", severity=Severity.INFORMATIONAL)
    resolved = raise_alert("gone", severity=Severity.CRITICAL)
    alert_resolve(dedup_key=resolved.dedup_key)
    actionable = raise_alert("act")
    critical = raise_alert("crit", severity=Severity.CRITICAL)

    response = logged_in(ops).get(reverse("alerts:list"))

    assert response.status_code == 200
    assert titles(response) == [critical.title, actionable.title, old_info.title, resolved.title]
    content = response.content.decode()
    assert "3 open: 1 critical, 1 actionable, 1 informational" in content
    assert f'href="/alerts/{critical.pk}/"' in content


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=open", ["fresh"]),
        ("status=acknowledged", ["acked"]),
        ("status=silenced", ["quiet"]),
        ("status=resolved", ["done"]),
        ("severity=critical", ["quiet"]),
        ("owner=cs_manager", ["acked"]),
    ],
)
def test_list_filters(ops, query, expected):
    raise_alert("fresh")
    acked = raise_alert("acked", owner="cs_manager")
    alert_acknowledge(alert_id=acked.pk, user=ops)
    quiet = raise_alert("quiet", severity=Severity.CRITICAL)
    alert_silence(alert_id=quiet.pk, user=ops, until=timezone.now() + timedelta(hours=1))
    done = raise_alert("done")
    alert_resolve(dedup_key=done.dedup_key)

    response = logged_in(ops).get(reverse("alerts:list") + "?" + query)

    assert [alert.scope for alert in response.context["page"]] == expected


def test_list_filter_by_rule(ops):
    raise_alert("a")
    other_rule = make_rule("Other rule")
    other = raise_alert("b", rule=other_rule)

    response = logged_in(ops).get(reverse("alerts:list"), {"rule": other_rule.pk})

    assert titles(response) == [other.title]


def test_list_invalid_filter_400(ops):
    raise_alert("a")

    response = logged_in(ops).get(reverse("alerts:list"), {"severity": "loud", "rule": "x"})

    assert response.status_code == 400
    content = response.content.decode()
    assert "severity &#x27;loud&#x27; is not one of critical, actionable, informational" in content
    assert "rule &#x27;x&#x27; is not a rule id" in content
    assert len(titles(response)) == 1


def test_list_query_count_flat(ops):
    client = logged_in(ops)
    for index in range(3):
        alert_acknowledge(alert_id=raise_alert(f"few{index}").pk, user=ops)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("alerts:list"))

    for index in range(30):
        alert_acknowledge(alert_id=raise_alert(f"many{index}").pk, user=ops)
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("alerts:list"))

    assert len(response.context["page"]) == 33
    assert len(many.captured_queries) == len(few.captured_queries)


# --- Detail ----------------------------------------------------------------------------------


def test_detail_shows_figures_runbook_history(ops):
    alert = raise_alert("all")
    webhook = NotificationTarget.objects.create(
        name="ops slack", kind=NotificationKind.WEBHOOK, address="https://hooks.example.com/x"
    )
    AlertNotification.objects.create(
        alert=alert,
        target=webhook,
        event="opened",
        status=NotificationStatus.FAILED,
        attempts=6,
        last_error="Webhook at hooks.example.com responded with HTTP 500.",
    )
    alert_acknowledge(alert_id=alert.pk, user=ops, note="On it")

    response = logged_in(ops).get(reverse("alerts:detail", args=[alert.pk]))

    assert response.status_code == 200
    content = response.content.decode()
    assert alert.title in content
    assert '<th scope="row">deviation percent</th><td>50</td>' in content
    assert "dhl 0.4, ups 0.6" in content
    assert 'data-action="remediate"' in content
    assert "Open the circuit breaker of select_carrier" in content
    assert 'hx-confirm="Open the circuit breaker of select_carrier? This takes effect' in content
    assert "<li>Compare the mix.</li>" in content
    assert "<strong>Acknowledged</strong> by olivia: On it" in content
    assert "Webhook at hooks.example.com responded with HTTP 500." in content
    assert 'data-action="acknowledge"' not in content  # already acknowledged
    assert 'data-action="silence-4"' in content


def test_detail_read_only_for_leadership(leader):
    alert = raise_alert("all")

    response = logged_in(leader).get(reverse("alerts:detail", args=[alert.pk]))

    content = response.content.decode()
    assert response.status_code == 200
    assert 'data-code="read_only"' in content
    assert "data-action=" not in content


def test_detail_query_count_flat(ops):
    client = logged_in(ops)
    alert = raise_alert("all")
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("alerts:detail", args=[alert.pk]))

    for index in range(20):
        alert_silence(
            alert_id=alert.pk, user=ops, until=timezone.now() + timedelta(hours=1), note=str(index)
        )
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("alerts:detail", args=[alert.pk]))

    assert len(many.captured_queries) == len(few.captured_queries)


def test_detail_missing_404(ops):
    response = logged_in(ops).get(reverse("alerts:detail", args=[424242]))

    assert response.status_code == 404
    assert "Alert #424242 does not exist." in response.content.decode()


# --- Actions ---------------------------------------------------------------------------------


def test_acknowledge_htmx(ops):
    alert = raise_alert("all")

    response = logged_in(ops).post(reverse("alerts:acknowledge", args=[alert.pk]), **HTMX)

    assert response.status_code == 200
    content = response.content.decode()
    assert content.startswith('<div id="alert-main"')
    assert 'hx-swap-oob="true"' in content
    assert "Acknowledged." in content
    alert.refresh_from_db()
    assert alert.acknowledged_by == ops


def test_silence_and_lift_htmx(ops):
    alert = raise_alert("all")
    client = logged_in(ops)

    silenced = client.post(reverse("alerts:silence", args=[alert.pk]), {"hours": "4"}, **HTMX)
    alert.refresh_from_db()
    remaining = alert.silenced_until - timezone.now()
    lifted = client.post(reverse("alerts:unsilence", args=[alert.pk]), **HTMX)

    assert silenced.status_code == 200
    assert "Silenced for 4 hours." in silenced.content.decode()
    assert timedelta(hours=3, minutes=59) < remaining <= timedelta(hours=4)
    assert 'data-action="unsilence"' in silenced.content.decode()
    assert lifted.status_code == 200
    alert.refresh_from_db()
    assert alert.silenced_until is None
    assert list(alert.events.values_list("kind", flat=True)) == ["opened", "silenced", "unsilenced"]


def test_silence_invalid_hours_400(ops):
    alert = raise_alert("all")

    response = logged_in(ops).post(
        reverse("alerts:silence", args=[alert.pk]), {"hours": "48"}, **HTMX
    )

    assert response.status_code == 400
    assert "Invalid silence &#x27;48&#x27;; choose 1, 4 or 24 hours." in response.content.decode()


def test_remediate_htmx_opens_breaker(ops):
    alert = raise_alert("all")

    response = logged_in(ops).post(reverse("alerts:remediate", args=[alert.pk]), **HTMX)

    assert response.status_code == 200
    assert "Opened the circuit breaker of select_carrier." in response.content.decode()
    assert Breaker.objects.get(key="select_carrier").state == BreakerState.OPEN


def test_remediate_htmx_escalates_queue(ops):
    from reviews.models import ReviewItem

    rule = make_rule(
        "Address queue old",
        kpi="queue_oldest_age",
        kind="threshold",
        threshold=Decimal("1800"),
        dimension="address",
        runbook="1. Escalate the overdue address items.\n2. Work the queue.\n3. Find the cause.",
        remediation="escalate_queue",
        remediation_target="address",
    )
    item = ReviewItem.objects.create(
        kind="address", reason="Bad ZIP.", source_data={}, approver_group="cs_manager"
    )
    ReviewItem.objects.filter(pk=item.pk).update(created_at=timezone.now() - timedelta(hours=1))
    alert = raise_alert("queue=address", rule=rule)
    client = logged_in(ops)

    page = client.get(reverse("alerts:detail", args=[alert.pk]))
    response = client.post(reverse("alerts:remediate", args=[alert.pk]), **HTMX)

    assert "Escalate the address queue&#x27;s items open longer than 30 min" in (
        page.content.decode()
    )
    assert response.status_code == 200
    assert "Escalated 1 item(s) of the address queue open longer than 30 min." in (
        response.content.decode()
    )
    item.refresh_from_db()
    assert item.escalated_to == "cs_manager"


def test_remediate_twice_409(ops):
    alert = raise_alert("all")
    client = logged_in(ops)
    client.post(reverse("alerts:remediate", args=[alert.pk]), **HTMX)

    response = client.post(reverse("alerts:remediate", args=[alert.pk]), **HTMX)

    assert response.status_code == 409
    assert 'data-code="already_done"' in response.content.decode()


def test_action_without_htmx_redirects(ops):
    alert = raise_alert("all")

    response = logged_in(ops).post(reverse("alerts:acknowledge", args=[alert.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("alerts:detail", args=[alert.pk])


def test_resolved_alert_action_409(ops):
    alert = raise_alert("all")
    alert_resolve(dedup_key=alert.dedup_key)

    response = logged_in(ops).post(reverse("alerts:acknowledge", args=[alert.pk]), **HTMX)

    assert response.status_code == 409
    assert 'data-code="resolved"' in response.content.decode()


# --- Who may see and act ---------------------------------------------------------------------


def test_viewer_action_403(leader):
    alert = raise_alert("all")

    response = logged_in(leader).post(reverse("alerts:acknowledge", args=[alert.pk]), **HTMX)

    assert response.status_code == 403
    content = response.content.decode()
    assert 'data-code="forbidden"' in content
    assert "ask an ops manager for the monitoring.change_alert permission" in content
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


@pytest.mark.parametrize("url_name", ["alerts:list", "alerts:detail"])
def test_no_view_permission_403(url_name):
    alert = raise_alert("all")
    agent = make_user("alice", "cs_agent")
    args = [alert.pk] if url_name == "alerts:detail" else []

    response = logged_in(agent).get(reverse(url_name, args=args))

    assert response.status_code == 403
    assert "has no access to alerts" in response.content.decode()


def test_no_view_permission_action_403():
    alert = raise_alert("all")
    agent = make_user("alice", "cs_agent")

    response = logged_in(agent).post(reverse("alerts:acknowledge", args=[alert.pk]), **HTMX)

    assert response.status_code == 403
    assert "You have no access to alerts." in response.content.decode()


def test_anonymous_redirected_to_login():
    response = Client().get(reverse("alerts:list"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_anonymous_htmx_action_redirects_client():
    alert = raise_alert("all")

    response = Client().post(reverse("alerts:acknowledge", args=[alert.pk]), **HTMX)

    assert response.status_code == 200
    assert response["HX-Redirect"].startswith(reverse("login"))


# --- Monitoring settings in the admin --------------------------------------------------------


def test_settings_admin_single_row(admin_client):
    add_url = "/admin/monitoring/monitoringsettings/add/"

    backwards = admin_client.post(
        add_url, {"baseline_start": "2026-02-01", "baseline_end": "2026-01-01"}
    )
    half = admin_client.post(add_url, {"baseline_start": "2026-02-01", "baseline_end": ""})
    saved = admin_client.post(
        add_url, {"baseline_start": "2026-01-01", "baseline_end": "2026-02-01"}
    )

    assert "The baseline cannot end before it starts." in backwards.content.decode()
    assert "Give both the start and the end of the baseline period" in half.content.decode()
    assert saved.status_code == 302
    assert admin_client.get(add_url).status_code == 403
