"""The alert lifecycle: dedup, history, acknowledge, silence, remediation and who may act."""

import importlib
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, User
from django.db import connection
from django.utils import timezone

from catalog.models import Channel, ChannelKind
from guardrails.models import AuditEntry, Breaker, BreakerCause, BreakerScope, BreakerState
from monitoring.models import (
    Alert,
    AlertNotification,
    AlertRule,
    AlertStatus,
    NotificationKind,
    NotificationTarget,
    Severity,
)
from monitoring.services import (
    AlertError,
    alert_acknowledge,
    alert_raise,
    alert_remediate,
    alert_resolve,
    alert_silence,
    alert_unsilence,
)
from tests.conftest import make_user

grant_monitoring_permissions = importlib.import_module(
    "monitoring.migrations.0004_alert_defaults_and_roles"
).grant_monitoring_permissions


@pytest.fixture
def ops(db) -> User:
    return make_user("olivia", "ops_manager")


@pytest.fixture
def cs_manager(db) -> User:
    return make_user("morgan", "cs_manager")


@pytest.fixture
def leader(db) -> User:
    return make_user("lee", "leadership")


def make_rule(**overrides) -> AlertRule:
    owner, _ = Group.objects.get_or_create(name="ops_manager")
    fields = {
        "name": "Carrier mix",
        "kpi": "carrier_mix",
        "kind": "baseline_deviation",
        "threshold": Decimal("30"),
        "severity": Severity.ACTIONABLE,
        "owner_group": owner,
        "runbook": "1. Open the breaker.\n2. Compare the mix.\n3. Close the breaker.",
        "remediation": "open_breaker",
        "remediation_target": "select_carrier",
    }
    return AlertRule.objects.create(**(fields | overrides))


def raise_for(rule: AlertRule | None = None, *, scope: str = "all", **overrides) -> Alert:
    fields = {
        "severity": rule.severity if rule else Severity.ACTIONABLE,
        "source": "alert_rules" if rule else "test",
        "dedup_key": f"rule:{rule.pk}:{scope}" if rule else "test:1",
        "title": "Carrier mix: 50 % off its 7-day baseline, more than 30 %",
        "owner_group": "ops_manager",
        "runbook": rule.runbook if rule else "1. Look.",
        "data": {"deviation_percent": "50"},
        "rule": rule,
        "scope": scope,
    }
    return alert_raise(**(fields | overrides))


# --- Dedup and history -----------------------------------------------------------------------


@pytest.mark.django_db
def test_dedup_while_firing():
    rule = make_rule()

    first = raise_for(rule)
    second = raise_for(rule, data={"deviation_percent": "55"})

    assert second.pk == first.pk
    assert Alert.objects.count() == 1
    assert second.occurrences == 2
    assert second.data == {"deviation_percent": "55"}
    assert second.rule == rule
    assert second.scope == "all"
    # The repeat within the hour counts, but does not add to the history.
    assert list(second.events.values_list("kind", flat=True)) == ["opened"]


@pytest.mark.django_db
def test_raised_again_recorded_hourly():
    rule = make_rule()
    with time_machine.travel(timezone.now(), tick=False) as clock:
        raise_for(rule)
        clock.shift(timedelta(minutes=30))
        raise_for(rule)
        clock.shift(timedelta(minutes=31))
        alert = raise_for(rule, data={"deviation_percent": "61"})

    assert alert.occurrences == 3
    assert list(alert.events.values_list("kind", flat=True)) == ["opened", "raised_again"]
    assert alert.events.get(kind="raised_again").data == {
        "deviation_percent": "61",
        "occurrences": 3,
    }


@pytest.mark.django_db
def test_open_and_resolve_leave_history_and_audit():
    rule = make_rule()
    alert = raise_for(rule)

    resolved = alert_resolve(
        dedup_key=alert.dedup_key,
        resolution="Cleared: 5 % off its 7-day baseline, not more than 30 %.",
        data={"deviation_percent": "5"},
    )

    assert resolved.status == AlertStatus.RESOLVED
    events = list(resolved.events.values_list("kind", "data"))
    assert events == [
        ("opened", {"deviation_percent": "50"}),
        ("resolved", {"deviation_percent": "5"}),
    ]
    opened = AuditEntry.objects.get(action="alert.opened", target_id=str(alert.pk))
    assert opened.actor_label == "alerting"
    closed = AuditEntry.objects.get(action="alert.resolved", target_id=str(alert.pk))
    assert closed.reason == "Cleared: 5 % off its 7-day baseline, not more than 30 %."
    assert closed.after == {"status": "resolved", "data": {"deviation_percent": "5"}}


@pytest.mark.django_db
def test_new_alert_after_resolution():
    rule = make_rule()
    first = raise_for(rule)
    alert_resolve(dedup_key=first.dedup_key, resolution="Cleared.")

    second = raise_for(rule)

    assert second.pk != first.pk
    assert second.occurrences == 1
    assert list(second.events.values_list("kind", flat=True)) == ["opened"]


# --- Acknowledge -----------------------------------------------------------------------------


def test_acknowledge_records_who(ops):
    alert = raise_for(make_rule())

    acknowledged = alert_acknowledge(alert_id=alert.pk, user=ops, note="Looking at UPS.")

    assert acknowledged.acknowledged_by == ops
    assert acknowledged.acknowledged_at is not None
    event = acknowledged.events.get(kind="acknowledged")
    assert (event.actor, event.note) == (ops, "Looking at UPS.")
    entry = AuditEntry.objects.get(action="alert.acknowledged")
    assert (entry.actor, entry.reason) == (ops, "Looking at UPS.")


def test_acknowledge_twice_conflicts(ops, cs_manager):
    alert = raise_for(make_rule())
    alert_acknowledge(alert_id=alert.pk, user=ops)

    with pytest.raises(AlertError) as error:
        alert_acknowledge(alert_id=alert.pk, user=cs_manager)

    assert error.value.code == "already_acknowledged"
    assert error.value.status == 409
    assert "already acknowledged by olivia" in error.value.message


def test_resolved_alert_cannot_change(ops):
    alert = raise_for(make_rule())
    alert_resolve(dedup_key=alert.dedup_key)

    with pytest.raises(AlertError) as error:
        alert_acknowledge(alert_id=alert.pk, user=ops)

    assert (error.value.code, error.value.status) == ("resolved", 409)


def test_missing_alert_not_found(ops):
    with pytest.raises(AlertError) as error:
        alert_acknowledge(alert_id=999999, user=ops)

    assert (error.value.code, error.value.status) == ("not_found", 404)
    assert error.value.message == "Alert #999999 does not exist."


# --- Silence ---------------------------------------------------------------------------------


def email_target(**overrides) -> NotificationTarget:
    fields = {
        "name": "ops mail",
        "kind": NotificationKind.EMAIL,
        "address": "ops@example.com",
        "min_severity": Severity.INFORMATIONAL,
    }
    return NotificationTarget.objects.create(**(fields | overrides))


def test_silence_records_until(ops):
    alert = raise_for(make_rule())
    until = timezone.now() + timedelta(hours=4)

    silenced = alert_silence(alert_id=alert.pk, user=ops, until=until, note="Known UPS outage")

    assert silenced.silenced_until == until
    assert silenced.silenced_by == ops
    event = silenced.events.get(kind="silenced")
    assert event.data == {"until": until.isoformat()}
    assert event.note == "Known UPS outage"
    assert AuditEntry.objects.get(action="alert.silenced").after == {
        "silenced_until": until.isoformat()
    }


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (timedelta(minutes=-1), "The silence must end in the future."),
        (timedelta(days=31), "A silence may last at most 30 days"),
    ],
)
def test_silence_rejects_bad_until(ops, offset, message):
    alert = raise_for(make_rule())

    with pytest.raises(AlertError) as error:
        alert_silence(alert_id=alert.pk, user=ops, until=timezone.now() + offset)

    assert (error.value.code, error.value.field, error.value.status) == ("invalid", "until", 400)
    assert error.value.message.startswith(message)


def test_silence_still_sends_resolution(ops):
    email_target()
    alert = raise_for(make_rule())
    alert_silence(alert_id=alert.pk, user=ops, until=timezone.now() + timedelta(hours=1))

    alert_resolve(dedup_key=alert.dedup_key, resolution="Cleared.")

    # The target got the opening, so it hears about the resolution despite the silence.
    assert sorted(AlertNotification.objects.values_list("event", flat=True)) == [
        "opened",
        "resolved",
    ]
    assert alert.events.filter(kind="resolved").exists()


def test_silence_sends_no_resolution_to_untold_targets(ops):
    alert = raise_for(make_rule())
    email_target()
    alert_silence(alert_id=alert.pk, user=ops, until=timezone.now() + timedelta(hours=1))

    alert_resolve(dedup_key=alert.dedup_key, resolution="Cleared.")

    assert not AlertNotification.objects.exists()


def test_silence_expires(ops):
    email_target()
    alert = raise_for(make_rule())
    alert_silence(alert_id=alert.pk, user=ops, until=timezone.now() + timedelta(hours=1))

    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        alert_resolve(dedup_key=alert.dedup_key, resolution="Cleared.")

    assert sorted(AlertNotification.objects.values_list("event", flat=True)) == [
        "opened",
        "resolved",
    ]


def test_unsilence_resumes(ops):
    email_target()
    alert = raise_for(make_rule())
    alert_silence(alert_id=alert.pk, user=ops, until=timezone.now() + timedelta(hours=1))

    lifted = alert_unsilence(alert_id=alert.pk, user=ops)
    alert_resolve(dedup_key=alert.dedup_key, resolution="Cleared.")

    assert lifted.silenced_until is None
    assert lifted.events.filter(kind="unsilenced", actor=ops).exists()
    assert AlertNotification.objects.filter(event="resolved").count() == 1


def test_unsilence_needs_silence(ops):
    alert = raise_for(make_rule())

    with pytest.raises(AlertError) as error:
        alert_unsilence(alert_id=alert.pk, user=ops)

    assert (error.value.code, error.value.status) == ("not_silenced", 409)


# --- Remediation -----------------------------------------------------------------------------


def test_remediation_opens_breaker(ops):
    alert = raise_for(make_rule())

    alert_remediate(alert_id=alert.pk, user=ops)

    breaker = Breaker.objects.get(scope=BreakerScope.ACTION, key="select_carrier")
    assert (breaker.state, breaker.cause) == (BreakerState.OPEN, BreakerCause.MANUAL)
    assert breaker.cause_detail.startswith(f"Opened from alert #{alert.pk}")
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN
    assert alert.acknowledged_by == ops
    event = alert.events.get(kind="remediated")
    assert event.note == "Opened the circuit breaker of select_carrier."
    assert event.data["breaker"] == breaker.pk
    entry = AuditEntry.objects.get(action="alert.remediated")
    assert (entry.actor, entry.before) == (ops, {"state": "closed"})


def test_remediation_twice_conflicts(ops):
    alert = raise_for(make_rule())
    alert_remediate(alert_id=alert.pk, user=ops)

    with pytest.raises(AlertError) as error:
        alert_remediate(alert_id=alert.pk, user=ops)

    assert (error.value.code, error.value.status) == ("already_done", 409)
    assert error.value.message == "The circuit breaker of select_carrier is already open."
    assert alert.events.filter(kind="remediated").count() == 1


def test_remediation_target_from_scope(ops):
    rule = make_rule(
        name="Disagreement",
        kpi="disagreement_rate",
        kind="threshold",
        dimension="*",
        remediation_target="",
    )
    alert = raise_for(
        rule,
        scope="action=substitute_sku",
        data={"scope": {"channel": "", "dimension_label": "action", "dimension": "substitute_sku"}},
    )

    alert_remediate(alert_id=alert.pk, user=ops)

    assert Breaker.objects.get(key="substitute_sku").state == BreakerState.OPEN


def test_remediation_unknown_action(ops):
    alert = raise_for(make_rule(remediation_target="no_such_action"))

    with pytest.raises(AlertError) as error:
        alert_remediate(alert_id=alert.pk, user=ops)

    assert (error.value.code, error.value.status) == ("target_not_found", 404)
    assert not Breaker.objects.exists()


def test_component_alert_has_no_remediation(ops):
    alert = raise_for(None)

    with pytest.raises(AlertError) as error:
        alert_remediate(alert_id=alert.pk, user=ops)

    assert error.value.code == "no_remediation"


def hold_rule() -> AlertRule:
    return make_rule(
        name="Duplicates",
        kpi="duplicate_shipment_rate",
        kind="rate_per_1000",
        scope="per_channel",
        remediation="hold_channel",
        remediation_target="",
    )


def test_remediation_holds_channel(ops):
    shop = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="shop", webhook_secret="s")
    alert = raise_for(
        hold_rule(),
        scope="channel=shop",
        data={"scope": {"channel": "shop", "dimension_label": "", "dimension": ""}},
    )

    alert_remediate(alert_id=alert.pk, user=ops)

    shop.refresh_from_db()
    assert shop.orders_held
    assert shop.orders_held_reason.startswith(f"Alert #{alert.pk}: ")
    assert alert.events.get(kind="remediated").note == "Held the orders of channel shop."
    assert AuditEntry.objects.filter(action="channel.orders_held", actor=ops).exists()

    with pytest.raises(AlertError) as error:
        alert_remediate(alert_id=alert.pk, user=ops)
    assert (error.value.code, error.value.status) == ("already_done", 409)


def test_hold_needs_channel_permission(cs_manager):
    shop = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="shop", webhook_secret="s")
    alert = raise_for(
        hold_rule(),
        scope="channel=shop",
        data={"scope": {"channel": "shop", "dimension_label": "", "dimension": ""}},
    )

    with pytest.raises(AlertError) as error:
        alert_remediate(alert_id=alert.pk, user=cs_manager)

    assert (error.value.code, error.value.status) == ("forbidden", 403)
    shop.refresh_from_db()
    assert not shop.orders_held
    assert not alert.events.filter(kind="remediated").exists()


def escalate_rule() -> AlertRule:
    return make_rule(
        name="Address queue old",
        kpi="queue_oldest_age",
        kind="threshold",
        threshold=Decimal("1800"),
        dimension="address",
        remediation="escalate_queue",
        remediation_target="",
    )


def review_item(*, age: timedelta, kind: str = "address", **fields):
    from reviews.models import ReviewItem

    item = ReviewItem.objects.create(
        kind=kind, reason="Address failed validation.", source_data={}, **fields
    )
    ReviewItem.objects.filter(pk=item.pk).update(created_at=timezone.now() - age)
    return item


def test_remediation_escalates_overdue_items(cs_manager):
    from reviews.models import ReviewItem

    old = review_item(age=timedelta(minutes=45), approver_group="cs_manager")
    older = review_item(age=timedelta(hours=3), approver_group="cs_manager")
    young = review_item(age=timedelta(minutes=10), approver_group="cs_manager")
    other_queue = review_item(age=timedelta(hours=3), kind="substitution", approver_group="x")
    done = review_item(
        age=timedelta(hours=3), approver_group="cs_manager", escalated_to="cs_manager"
    )
    ReviewItem.objects.filter(pk=done.pk).update(escalated_at=timezone.now())
    alert = raise_for(
        escalate_rule(),
        scope="queue=address",
        data={"scope": {"channel": "", "dimension_label": "queue", "dimension": "address"}},
    )

    alert_remediate(alert_id=alert.pk, user=cs_manager)

    escalated = set(ReviewItem.objects.exclude(escalated_at=None).values_list("pk", flat=True))
    assert escalated == {old.pk, older.pk, done.pk}
    assert ReviewItem.objects.get(pk=old.pk).escalated_to == "cs_manager"
    assert young.pk not in escalated
    assert other_queue.pk not in escalated
    event = alert.events.get(kind="remediated")
    assert event.note == "Escalated 2 item(s) of the address queue open longer than 30 min."
    assert event.data == {
        "remediation": "escalate_queue",
        "target": "address",
        "older_than_seconds": 1800,
        "escalated": 2,
    }
    entries = AuditEntry.objects.filter(action="review_item.escalated", actor=cs_manager)
    assert sorted(entries.values_list("target_id", flat=True)) == sorted(
        [str(old.pk), str(older.pk)]
    )
    assert entries.first().reason.startswith(f"Alert #{alert.pk}: ")

    with pytest.raises(AlertError) as error:
        alert_remediate(alert_id=alert.pk, user=cs_manager)
    assert (error.value.code, error.value.status) == ("already_done", 409)
    assert error.value.message == (
        "No open item of the address queue is older than 30 min without being escalated already."
    )


def test_remediation_escalate_unknown_queue(ops):
    rule = escalate_rule()
    rule.remediation_target = "nowhere"
    rule.save(update_fields=["remediation_target"])
    alert = raise_for(rule, scope="queue=address")

    with pytest.raises(AlertError) as error:
        alert_remediate(alert_id=alert.pk, user=ops)

    assert (error.value.code, error.value.status) == ("target_not_found", 404)


@pytest.mark.django_db
def test_escalate_label_names_queue_and_age():
    from monitoring.remediation import remediation_label

    rule = escalate_rule()

    assert remediation_label(rule=rule) == (
        "Escalate the (unknown) queue's items open longer than 30 min"
    )
    rule.remediation_target = "substitution"
    rule.threshold = Decimal("7200")
    assert remediation_label(rule=rule) == (
        "Escalate the substitution queue's items open longer than 2 h"
    )


# --- Who may act -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "act",
    [
        lambda alert, user: alert_acknowledge(alert_id=alert.pk, user=user),
        lambda alert, user: alert_silence(
            alert_id=alert.pk, user=user, until=timezone.now() + timedelta(hours=1)
        ),
        lambda alert, user: alert_unsilence(alert_id=alert.pk, user=user),
        lambda alert, user: alert_remediate(alert_id=alert.pk, user=user),
    ],
    ids=["acknowledge", "silence", "unsilence", "remediate"],
)
def test_viewer_cannot_act(leader, act):
    alert = raise_for(make_rule())

    with pytest.raises(AlertError) as error:
        act(alert, leader)

    assert (error.value.code, error.value.status) == ("forbidden", 403)
    assert "monitoring.change_alert" in error.value.message
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    assert alert.silenced_until is None
    assert list(alert.events.values_list("kind", flat=True)) == ["opened"]
    assert not Breaker.objects.exists()


def test_cs_manager_may_acknowledge(cs_manager):
    alert = raise_for(make_rule())

    assert alert_acknowledge(alert_id=alert.pk, user=cs_manager).acknowledged_by == cs_manager


# --- Races -----------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_raises_open_one_alert():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real row locks between transactions")
    rule = make_rule()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            raise_for(rule)
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    alert = Alert.objects.get()
    assert alert.occurrences == 4
    assert alert.events.filter(kind="opened").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_acknowledge_once():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real row locks between transactions")
    alert = raise_for(make_rule())
    users = [make_user(f"ops{index}", "ops_manager") for index in range(3)]
    # The flush of a transactional test removed the grants of the migrations.
    grant_monitoring_permissions(django_apps, None)
    barrier = threading.Barrier(3)
    outcomes: list[str] = []

    def run(user: User) -> None:
        try:
            barrier.wait(timeout=10)
            alert_acknowledge(alert_id=alert.pk, user=user)
            outcomes.append("acknowledged")
        except AlertError as error:
            outcomes.append(error.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["acknowledged", "already_acknowledged", "already_acknowledged"]
    assert alert.events.filter(kind="acknowledged").count() == 1


# --- Alert admin actions ---------------------------------------------------------------------


def test_admin_acknowledge_and_silence(ops):
    from django.test import Client

    ops.is_staff = True
    ops.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(ops)
    first = raise_for(make_rule())
    second = raise_for(make_rule(name="Other"))

    client.post(
        "/admin/monitoring/alert/",
        {"action": "acknowledge", "_selected_action": [first.pk, second.pk]},
    )
    response = client.post(
        "/admin/monitoring/alert/",
        {"action": "silence_1h", "_selected_action": [first.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert set(Alert.objects.values_list("acknowledged_by", flat=True)) == {ops.pk}
    first.refresh_from_db()
    assert timedelta(minutes=59) < first.silenced_until - timezone.now() <= timedelta(hours=1)
    assert "1 alert(s) updated." in response.content.decode()


def test_admin_alert_page_is_read_only(ops):
    from django.test import Client

    ops.is_staff = True
    ops.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(ops)
    alert = raise_for(make_rule())

    response = client.get(f"/admin/monitoring/alert/{alert.pk}/change/")

    content = response.content.decode()
    assert response.status_code == 200
    assert 'name="_save"' not in content
    assert f'href="/alerts/{alert.pk}/"' in content
    assert "Opened" in content  # the history inline


# --- Pausing canaries ------------------------------------------------------------------------


def pause_rule(target: str = "") -> AlertRule:
    return make_rule(
        name=f"Fulfilment exceptions {target or 'all'}",
        kpi="fulfilment_exception_rate",
        kind="threshold",
        remediation="pause_canaries",
        remediation_target=target,
    )


def running_canary(ops: User, subject: str):
    from tests.guardrails.canary_fixtures import canary_of, model_versions

    _control, candidate = model_versions(ops, subject=subject)
    return canary_of(ops, candidate)


def test_remediation_pauses_every_running_canary(ops):
    from guardrails.models import CanaryStatus

    first = running_canary(ops, "gpt-carrier")
    second = running_canary(ops, "gpt-address")
    alert = raise_for(pause_rule())

    alert_remediate(alert_id=alert.pk, user=ops)

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == second.status == CanaryStatus.PAUSED
    pause = first.events.get(kind="paused")
    assert pause.actor == ops
    assert pause.detail.startswith(f"Alert #{alert.pk}: ")
    remediated = alert.events.get(kind="remediated")
    assert remediated.note == f"Paused 2 canary(ies): #{first.pk}, #{second.pk}."

    with pytest.raises(AlertError) as error:
        alert_remediate(alert_id=alert.pk, user=ops)
    assert (error.value.code, error.value.status) == ("already_done", 409)


def test_remediation_pauses_only_the_named_canary(ops):
    from guardrails.models import CanaryStatus

    named = running_canary(ops, "gpt-carrier")
    other = running_canary(ops, "gpt-address")
    alert = raise_for(pause_rule(target=str(named.pk)))

    alert_remediate(alert_id=alert.pk, user=ops)

    named.refresh_from_db()
    other.refresh_from_db()
    assert (named.status, other.status) == (CanaryStatus.PAUSED, CanaryStatus.RUNNING)


def test_pause_canaries_needs_canary_permission(ops, cs_manager):
    from guardrails.models import CanaryStatus

    canary = running_canary(ops, "gpt-carrier")
    alert = raise_for(pause_rule())

    with pytest.raises(AlertError) as error:
        alert_remediate(alert_id=alert.pk, user=cs_manager)

    assert (error.value.code, error.value.status) == ("forbidden", 403)
    canary.refresh_from_db()
    assert canary.status == CanaryStatus.RUNNING
    assert not alert.events.filter(kind="remediated").exists()


@pytest.mark.django_db
def test_pause_canaries_label():
    from monitoring.remediation import remediation_label

    assert remediation_label(rule=pause_rule()) == "Pause every running canary"
    assert remediation_label(rule=pause_rule(target="7")) == "Pause canary #7"
