"""The breakers API: who may list, report and operate, and the 400s for bad reports."""

import pytest
from django.test import Client

from catalog.models import Channel
from guardrails import breakers
from guardrails.models import (
    AuditEntry,
    AutonomyGate,
    Breaker,
    BreakerCause,
    BreakerScope,
    BreakerState,
)
from orders.models import ChannelApiGrant
from tests.conftest import make_user

LIST_URL = "/api/v1/breakers/"
DEGRADATION_URL = "/api/v1/breakers/report-degradation/"
RECOVERY_URL = "/api/v1/breakers/report-recovery/"


def client_for(role: str | None, *, channels: tuple[str, ...] = ()) -> Client:
    """A logged-in client of a new user in `role`, granted the channels named by code."""
    user = make_user(f"user-{role}", role)
    for channel in Channel.objects.filter(code__in=channels):
        ChannelApiGrant.objects.create(user=user, channel=channel)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def report() -> dict:
    return {"scope": "channel", "key": "shop", "detail": "Shopify API answers 503"}


def test_integration_reports_degradation(default_policies, channel, report):
    response = client_for("integration", channels=("shop",)).post(
        DEGRADATION_URL, report, content_type="application/json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == BreakerState.OPEN
    assert body["cause"] == BreakerCause.UPSTREAM
    assert body["events"][0]["actor"] == "user-integration"
    assert AuditEntry.objects.filter(action="breaker.open").count() == 1


def test_cs_agent_may_not_report(default_policies, channel, report):
    response = client_for("cs_agent").post(DEGRADATION_URL, report, content_type="application/json")

    assert response.status_code == 403
    assert Breaker.objects.count() == 0


def test_anonymous_may_not_report(default_policies, channel, report):
    response = Client().post(DEGRADATION_URL, report, content_type="application/json")

    assert response.status_code in (401, 403)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scope": "warehouse"}, "scope"),
        ({"key": ""}, "key"),
        ({"scope": "action", "key": "teleport_parcel"}, "key"),
        ({"scope": "channel", "key": "no-such-channel"}, "key"),
        ({"detail": ""}, "detail"),
    ],
)
def test_report_rejects_bad_input(default_policies, channel, report, change, field):
    response = client_for("integration").post(
        DEGRADATION_URL, report | change, content_type="application/json"
    )

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert Breaker.objects.count() == 0


def test_report_accepts_any_model_name(default_policies, report):
    body = report | {"scope": "model", "key": "gpt-sub"}

    response = client_for("integration").post(
        DEGRADATION_URL, body, content_type="application/json"
    )

    assert response.status_code == 200
    assert Breaker.objects.get(scope=BreakerScope.MODEL).key == "gpt-sub"


def test_integration_reports_recovery(default_policies, channel, report):
    integration = client_for("integration", channels=("shop",))
    integration.post(DEGRADATION_URL, report, content_type="application/json")

    response = integration.post(
        RECOVERY_URL, report | {"detail": "healthy again"}, content_type="application/json"
    )

    assert response.status_code == 200
    assert response.json()["state"] == BreakerState.HALF_OPEN
    assert response.json()["cause"] == BreakerCause.RECOVERY


def test_list_filters_by_state(default_policies, channel, report):
    integration = client_for("integration", channels=("shop",))
    integration.post(DEGRADATION_URL, report, content_type="application/json")
    Breaker.objects.create(scope=BreakerScope.MODEL, key="gpt-sub")

    open_only = integration.get(LIST_URL, {"state": "open"})
    models = integration.get(LIST_URL, {"scope": "model"})

    assert open_only.status_code == 200
    assert [row["key"] for row in open_only.json()["results"]] == ["shop"]
    assert [row["key"] for row in models.json()["results"]] == ["gpt-sub"]


def test_cs_agent_may_not_list(default_policies):
    assert client_for("cs_agent").get(LIST_URL).status_code == 403


def test_ops_manager_opens_and_closes(default_policies):
    breaker = Breaker.objects.create(scope=BreakerScope.ACTION, key="substitute_sku")
    ops = client_for("ops_manager")

    opened = ops.post(
        f"{LIST_URL}{breaker.pk}/open/",
        {"detail": "Supplier feed broken"},
        content_type="application/json",
    )
    closed = ops.post(
        f"{LIST_URL}{breaker.pk}/close/", {"detail": "Feed fixed"}, content_type="application/json"
    )

    assert opened.status_code == 200
    assert opened.json()["state"] == BreakerState.OPEN
    assert opened.json()["cause"] == BreakerCause.MANUAL
    assert closed.status_code == 200
    assert closed.json()["state"] == BreakerState.CLOSED
    assert [event["cause"] for event in closed.json()["events"]] == ["manual", "manual"]
    reasons = AuditEntry.objects.filter(target_id=str(breaker.pk)).values_list("reason", flat=True)
    assert set(reasons) == {"Supplier feed broken", "Feed fixed"}


@pytest.mark.parametrize("role", ["cs_manager", "integration"])
def test_operating_needs_operate_permission(default_policies, role):
    breaker = Breaker.objects.create(scope=BreakerScope.ACTION, key="substitute_sku")

    response = client_for(role).post(
        f"{LIST_URL}{breaker.pk}/open/", {"detail": "x"}, content_type="application/json"
    )

    assert response.status_code == 403
    breaker.refresh_from_db()
    assert breaker.state == BreakerState.CLOSED


def test_operating_unknown_breaker_is_404(default_policies):
    response = client_for("ops_manager").post(
        f"{LIST_URL}999/close/", {"detail": "x"}, content_type="application/json"
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_operating_needs_reason(default_policies):
    breaker = Breaker.objects.create(scope=BreakerScope.ACTION, key="substitute_sku")

    response = client_for("ops_manager").post(
        f"{LIST_URL}{breaker.pk}/open/", {}, content_type="application/json"
    )

    assert response.status_code == 400
    assert "detail" in response.json()["error"]["fields"]


# --- Admin ----------------------------------------------------------------------------------

CHANGELIST = "/admin/guardrails/breaker/"


def test_admin_open_by_hand_records_reason(default_policies, ops, client):
    breaker = Breaker.objects.create(scope=BreakerScope.ACTION, key="substitute_sku")
    client.force_login(ops)

    response = client.post(
        CHANGELIST,
        {
            "action": "open_by_hand",
            "_selected_action": [breaker.pk],
            "reason": "Supplier feed broken",
        },
    )

    assert response.status_code == 302
    breaker.refresh_from_db()
    assert breaker.state == BreakerState.OPEN
    assert breaker.cause == BreakerCause.MANUAL
    event = breaker.events.get()
    assert event.actor == ops
    assert event.detail == "Supplier feed broken"


def test_admin_action_needs_reason(default_policies, ops, client):
    breaker = Breaker.objects.create(scope=BreakerScope.ACTION, key="substitute_sku")
    client.force_login(ops)

    client.post(CHANGELIST, {"action": "open_by_hand", "_selected_action": [breaker.pk]})

    breaker.refresh_from_db()
    assert breaker.state == BreakerState.CLOSED


def test_admin_add_opens_new_breaker(default_policies, ops, client):
    client.force_login(ops)

    response = client.post(
        f"{CHANGELIST}add/",
        {"scope": "model", "key": "gpt-sub", "reason": "Vendor incident"},
    )

    assert response.status_code == 302
    breaker = Breaker.objects.get(scope=BreakerScope.MODEL, key="gpt-sub")
    assert breaker.state == BreakerState.OPEN
    assert breaker.events.get().actor == ops


def test_admin_cs_manager_cannot_operate(default_policies, manager, client):
    breaker = Breaker.objects.create(scope=BreakerScope.ACTION, key="substitute_sku")
    client.force_login(manager)

    page = client.get(CHANGELIST)
    client.post(
        CHANGELIST,
        {"action": "open_by_hand", "_selected_action": [breaker.pk], "reason": "x"},
    )

    assert page.status_code == 200
    assert b"open_by_hand" not in page.content
    breaker.refresh_from_db()
    assert breaker.state == BreakerState.CLOSED


def test_admin_pages_render(default_policies, ops, client):
    breaker = breakers.breaker_open(
        scope=BreakerScope.CHANNEL, key="shop", cause=BreakerCause.MANUAL, detail="x", user=ops
    )
    client.force_login(ops)

    for url in (
        CHANGELIST,
        f"{CHANGELIST}{breaker.pk}/change/",
        "/admin/guardrails/breakerevent/",
        "/admin/guardrails/autonomygate/",
    ):
        assert client.get(url).status_code == 200, url


def test_admin_recompute_gate(default_policies, ops, client):
    client.force_login(ops)
    gate = AutonomyGate.objects.get(action__code="substitute_sku")

    client.post(
        "/admin/guardrails/autonomygate/",
        {"action": "recompute_now", "_selected_action": [gate.pk]},
    )

    gate.refresh_from_db()
    assert gate.computed_at is not None
