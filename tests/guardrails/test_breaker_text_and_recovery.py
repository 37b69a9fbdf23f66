"""Breakers: text fields take JSON strings only, a recovery report for a scope with no breaker
records nothing, and the admin's "Open by hand" counts only the breakers it opened."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from catalog.models import Channel
from guardrails import breakers
from guardrails.models import (
    AuditEntry,
    Breaker,
    BreakerCause,
    BreakerEvent,
    BreakerScope,
    BreakerState,
)
from orders.models import ChannelApiGrant
from tests.conftest import make_user

LIST_URL = "/api/v1/breakers/"
DEGRADATION_URL = "/api/v1/breakers/report-degradation/"
RECOVERY_URL = "/api/v1/breakers/report-recovery/"
CHANGELIST = "/admin/guardrails/breaker/"


def client_for(role: str, *, channels: tuple[str, ...] = ()) -> Client:
    user = make_user(f"user-{role}", role)
    for channel in Channel.objects.filter(code__in=channels):
        ChannelApiGrant.objects.create(user=user, channel=channel)
    client = Client()
    client.force_login(user)
    return client


# --- JSON numbers in text fields ----------------------------------------------------------------


@pytest.mark.parametrize("url", [DEGRADATION_URL, RECOVERY_URL])
@pytest.mark.parametrize(
    ("change", "field"),
    [({"detail": 123}, "detail"), ({"key": 123}, "key"), ({"detail": True}, "detail")],
)
def test_report_text_must_be_json_string(default_policies, url, change, field):
    body = {"scope": "model", "key": "gpt-sub", "detail": "API returns 503"} | change

    response = client_for("integration").post(url, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {field: ["A JSON string is required."]}
    assert not Breaker.objects.exists()


@pytest.mark.parametrize("operation", ["open", "close"])
def test_operate_detail_must_be_json_string(default_policies, operation):
    breaker = breakers.breaker_open(
        scope=BreakerScope.ACTION, key="substitute_sku", cause="manual", detail="x", user=None
    )
    if operation == "open":
        breakers.breaker_close(breaker_id=breaker.pk, user=None, detail="y")
    state_before = Breaker.objects.get(pk=breaker.pk).state
    events_before = BreakerEvent.objects.count()

    response = client_for("ops_manager").post(
        f"{LIST_URL}{breaker.pk}/{operation}/", {"detail": 123}, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"detail": ["A JSON string is required."]}
    assert Breaker.objects.get(pk=breaker.pk).state == state_before
    assert BreakerEvent.objects.count() == events_before


# --- report-recovery for a scope with no breaker ------------------------------------------------


def test_recovery_without_breaker_records_nothing(default_policies):
    audits_before = AuditEntry.objects.count()

    response = client_for("integration").post(
        RECOVERY_URL,
        {"scope": "model", "key": "never-seen", "detail": "ok"},
        content_type="application/json",
    )

    assert response.status_code == 200
    body = response.json()
    assert body["id"] is None
    assert body["state"] == BreakerState.CLOSED
    assert body["scope"] == "model"
    assert body["key"] == "never-seen"
    assert body["events"] == []
    assert body["note"] == (
        "No breaker exists for model 'never-seen', so there is nothing to recover; "
        "nothing was recorded."
    )
    assert not Breaker.objects.exists()
    assert AuditEntry.objects.count() == audits_before


def test_admin_add_after_absent_recovery(default_policies, ops, client):
    client_for("integration").post(
        RECOVERY_URL,
        {"scope": "model", "key": "never-seen", "detail": "ok"},
        content_type="application/json",
    )
    client.force_login(ops)

    response = client.post(
        f"{CHANGELIST}add/", {"scope": "model", "key": "never-seen", "reason": "Vendor incident"}
    )

    assert response.status_code == 302
    assert Breaker.objects.get(key="never-seen").state == BreakerState.OPEN


def test_upstream_breaker_recovery_starts_trial(default_policies):
    breakers.breaker_report_degradation(scope="model", key="gpt-sub", detail="503", user=None)

    response = client_for("integration").post(
        RECOVERY_URL,
        {"scope": "model", "key": "gpt-sub", "detail": "ok"},
        content_type="application/json",
    )

    assert response.status_code == 200
    assert response.json()["state"] == BreakerState.HALF_OPEN
    assert "note" not in response.json()


def test_recovery_other_channel_is_403(default_policies, channel):
    response = client_for("integration").post(
        RECOVERY_URL,
        {"scope": "channel", "key": "shop", "detail": "ok"},
        content_type="application/json",
    )

    assert response.status_code == 403
    assert not Breaker.objects.exists()


# --- Admin: Open by hand -------------------------------------------------------------------------


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.level_tag, message.message) for message in get_messages(response.wsgi_request)]


def open_by_hand(client: Client, *breakers_selected: Breaker):
    return client.post(
        CHANGELIST,
        {
            "action": "open_by_hand",
            "_selected_action": [breaker.pk for breaker in breakers_selected],
            "reason": "again",
        },
    )


def test_admin_open_counts_only_opened(default_policies, ops, client):
    closed = Breaker.objects.create(scope=BreakerScope.ACTION, key="substitute_sku")
    manual = breakers.breaker_open(
        scope=BreakerScope.MODEL, key="gpt-sub", cause="manual", detail="x", user=ops
    )
    client.force_login(ops)

    response = open_by_hand(client, closed, manual)

    assert messages_of(response) == [
        ("info", "Opened 1 breaker by hand."),
        ("warning", "Already open by hand, left as they were: model gpt-sub."),
    ]
    assert manual.events.count() == 1


def test_admin_open_manual_breaker_warns(default_policies, ops, client):
    manual = breakers.breaker_open(
        scope=BreakerScope.MODEL, key="gpt-sub", cause="manual", detail="x", user=ops
    )
    client.force_login(ops)

    response = open_by_hand(client, manual)

    assert messages_of(response) == [
        ("warning", "Already open by hand, left as they were: model gpt-sub.")
    ]


def test_admin_open_upstream_breaker_becomes_manual(default_policies, ops, client):
    upstream = breakers.breaker_report_degradation(
        scope="model", key="gpt-sub", detail="503", user=None
    )
    client.force_login(ops)

    response = open_by_hand(client, upstream)

    assert messages_of(response) == [
        ("info", "Already open, now held open by hand until closed: model gpt-sub.")
    ]
    upstream.refresh_from_db()
    assert upstream.cause == BreakerCause.MANUAL


def test_admin_open_plural(default_policies, ops, client):
    first = Breaker.objects.create(scope=BreakerScope.ACTION, key="substitute_sku")
    second = Breaker.objects.create(scope=BreakerScope.MODEL, key="gpt-sub")
    client.force_login(ops)

    response = open_by_hand(client, first, second)

    assert messages_of(response) == [("info", "Opened 2 breakers by hand.")]
