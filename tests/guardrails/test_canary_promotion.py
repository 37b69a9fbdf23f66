"""Versions and the canary lifecycle: creating and activating versions, starting, changing,
pausing, resuming, stopping and promoting canaries, with their events, audit and permissions."""

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from guardrails import rollouts
from guardrails.models import (
    AuditEntry,
    Canary,
    CanaryArm,
    CanaryEvent,
    CanaryEventKind,
    CanaryStatus,
    Policy,
    Verdict,
    Version,
    VersionStatus,
)
from guardrails.rollouts import RolloutConflict, RolloutError, RolloutForbidden
from tests.conftest import make_user

from .backtest_fixtures import live_version, version_copy
from .canary_fixtures import canary_of, model_versions, orders_in_arm, propose_carrier


@pytest.fixture
def versions(default_policies, catalog, ops):
    return model_versions(ops)


@pytest.fixture
def canary(versions, ops):
    return canary_of(ops, versions[1])


# --- Versions -------------------------------------------------------------------------------------


def test_version_create_audited(default_policies, ops):
    version = rollouts.version_create(
        kind="prompt",
        subject="address-fixer",
        label="2026-12-01",
        changelog="Asks for the unit number.",
        user=ops,
        action="correct_shipping_address",
        config={"prompt": "Correct the address."},
    )

    assert version.status == VersionStatus.DRAFT
    assert version.action.code == "correct_shipping_address"
    entry = AuditEntry.objects.get(action="version.created", target_id=str(version.pk))
    assert entry.actor == ops
    assert entry.after["label"] == "2026-12-01"


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"changelog": "  "}, "changelog", "required"),
        ({"label": ""}, "label", "required"),
        ({"kind": "widget"}, "kind", "invalid_kind"),
        ({"config": ["not", "a", "dict"]}, "config", "invalid_config"),
        ({"action": "fly_to_moon"}, "action", "unknown_action"),
        ({"label": "x" * 101}, "label", "too_long"),
    ],
)
def test_version_create_rejects_bad_input(default_policies, ops, changes, field, code):
    values = {"kind": "model", "subject": "gpt-carrier", "label": "v1", "changelog": "First."}

    with pytest.raises(RolloutError) as raised:
        rollouts.version_create(user=ops, **(values | changes))

    assert raised.value.status == 400
    assert raised.value.field == field
    assert raised.value.code == code
    assert not Version.objects.exists()


def test_version_label_unique_per_subject(default_policies, ops):
    rollouts.version_create(
        kind="model", subject="gpt-carrier", label="v1", changelog="A.", user=ops
    )
    rollouts.version_create(kind="model", subject="gpt-other", label="v1", changelog="B.", user=ops)

    with pytest.raises(RolloutError) as raised:
        rollouts.version_create(
            kind="model", subject="gpt-carrier", label="v1", changelog="C.", user=ops
        )

    assert raised.value.field == "label"
    assert raised.value.code == "label_taken"


def test_rule_set_needs_drafts_one_per_policy(default_policies, ops):
    live = live_version("select_carrier")
    first = version_copy(live, confidence_above=Decimal("0.95"))
    second = version_copy(live, confidence_above=Decimal("0.97"))
    values = {"kind": "rule_set", "subject": "rules", "label": "1", "changelog": "A.", "user": ops}

    cases = [([], "required"), ([live], "published_policy_version")]
    cases.append(([first, second], "two_versions_of_one_policy"))
    for policy_versions, code in cases:
        with pytest.raises(RolloutError) as raised:
            rollouts.version_create(policy_versions=policy_versions, **values)
        assert (raised.value.field, raised.value.code) == ("policy_versions", code)

    with pytest.raises(RolloutError) as raised:
        rollouts.version_create(
            kind="model", subject="m", label="1", changelog="A.", user=ops, policy_versions=[first]
        )
    assert raised.value.code == "not_a_rule_set"


def test_version_create_needs_permission(default_policies):
    manager = make_user("cara", "cs_manager")

    with pytest.raises(RolloutForbidden) as raised:
        rollouts.version_create(kind="model", subject="m", label="1", changelog="A.", user=manager)

    assert raised.value.status == 403


def test_second_version_needs_canary(versions, ops):
    with pytest.raises(RolloutConflict) as raised:
        rollouts.version_activate(version_id=versions[1].pk, user=ops, note="Go.")

    assert raised.value.code == "canary_required"
    assert Version.objects.get(pk=versions[1].pk).status == VersionStatus.DRAFT


@pytest.fixture
def first_canary(default_policies, catalog, ops):
    """A canary of the first version of gpt-new: it has no control."""
    first = rollouts.version_create(
        kind="model", subject="gpt-new", label="v1", changelog="First.", user=ops
    )
    return canary_of(ops, first, name="gpt-new first")


@pytest.mark.parametrize("paused", [False, True])
def test_activate_rejected_during_open_canary(first_canary, ops, paused):
    if paused:
        rollouts.canary_pause(canary_id=first_canary.pk, user=ops, reason="Peak.")
    other = rollouts.version_create(
        kind="model", subject="gpt-new", label="v1b", changelog="Other.", user=ops
    )

    with pytest.raises(RolloutConflict) as raised:
        rollouts.version_activate(version_id=other.pk, user=ops, note="Skip the canary.")

    assert raised.value.code == "canary_open"
    assert raised.value.data == {"canary": first_canary.pk}
    assert "gpt-new first" in raised.value.message
    other.refresh_from_db()
    assert other.status == VersionStatus.DRAFT
    assert first_canary.control is None


def test_activate_after_first_canary_stopped(first_canary, ops):
    rollouts.canary_stop(canary_id=first_canary.pk, user=ops, note="Not ready.")
    other = rollouts.version_create(
        kind="model", subject="gpt-new", label="v1b", changelog="Other.", user=ops
    )

    rollouts.version_activate(version_id=other.pk, user=ops, note="Go.")

    other.refresh_from_db()
    assert other.status == VersionStatus.ACTIVE


def test_first_version_activated(versions):
    control = versions[0]

    assert control.status == VersionStatus.ACTIVE
    assert control.activated_at is not None
    assert AuditEntry.objects.filter(action="version.activated", target_id=str(control.pk)).exists()


# --- Starting and changing canaries ---------------------------------------------------------------


def test_canary_start_sets_statuses(canary, versions, ops):
    assert canary.status == CanaryStatus.RUNNING
    assert canary.control == versions[0]
    assert canary.candidate.status == VersionStatus.CANARY
    assert len(canary.salt) == 16
    assert canary.ends_at - canary.started_at == timedelta(days=14)
    event = CanaryEvent.objects.get(canary=canary)
    assert event.kind == CanaryEventKind.STARTED
    assert event.actor == ops
    audit = AuditEntry.objects.get(action="canary.started", target_id=str(canary.pk))
    assert audit.before is None
    assert audit.after["status"] == "running"
    assert audit.after["share"] == "0.05"


@pytest.mark.parametrize("share", ["0.005", "0.06", "abc", "-0.01", "0.01234"])
def test_canary_share_outside_range_400(versions, ops, share):
    with pytest.raises(RolloutError) as raised:
        rollouts.canary_start(candidate_id=versions[1].pk, user=ops, share=share)

    assert raised.value.status == 400
    assert raised.value.field == "share"
    assert not Canary.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("days", 3_000_000, "Must be a whole number from 1 to 365; got 3000000."),
        ("days", 10**12, "Must be a whole number from 1 to 365; got 1000000000000."),
        ("days", 366, "Must be a whole number from 1 to 365; got 366."),
        (
            "min_orders_per_arm",
            10**12,
            "Must be a whole number from 1 to 10,000,000; got 1000000000000.",
        ),
        ("min_orders_per_arm", 0, "Must be a whole number from 1 to 10,000,000; got 0."),
    ],
)
def test_canary_start_rejects_large_numbers(versions, ops, field, value, message):
    with pytest.raises(RolloutError) as raised:
        rollouts.canary_start(candidate_id=versions[1].pk, user=ops, **{field: value})

    assert raised.value.status == 400
    assert raised.value.code == "invalid_number"
    assert raised.value.field == field
    assert raised.value.message == message
    assert not Canary.objects.exists()


def test_canary_start_accepts_upper_bounds(versions, ops):
    canary = rollouts.canary_start(
        candidate_id=versions[1].pk,
        user=ops,
        days=365,
        min_orders_per_arm=10_000_000,
        max_exception_increase_pp="0.1",
    )

    canary.refresh_from_db()
    assert canary.ends_at - canary.started_at == timedelta(days=365)
    assert canary.min_orders_per_arm == 10_000_000
    assert canary.max_exception_increase_pp == Decimal("0.100")


@pytest.mark.parametrize("threshold", ["999", "0.101", "0.11", "0", "-0.05", "0.0505", "abc"])
def test_canary_start_rejects_loose_threshold(versions, ops, threshold):
    with pytest.raises(RolloutError) as raised:
        rollouts.canary_start(
            candidate_id=versions[1].pk, user=ops, max_exception_increase_pp=threshold
        )

    assert raised.value.status == 400
    assert raised.value.field == "max_exception_increase_pp"
    assert not Canary.objects.exists()


def test_canary_start_accepts_stricter_threshold(versions, ops):
    canary = rollouts.canary_start(
        candidate_id=versions[1].pk, user=ops, max_exception_increase_pp="0.05"
    )

    assert canary.max_exception_increase_pp == Decimal("0.05")


def test_canary_start_rejects_second_canary(canary, ops):
    another = rollouts.version_create(
        kind="model", subject="gpt-carrier", label="v3", changelog="Other.", user=ops
    )

    with pytest.raises(RolloutConflict) as raised:
        rollouts.canary_start(candidate_id=another.pk, user=ops)

    assert raised.value.code == "canary_open"
    assert raised.value.data == {"canary": canary.pk}


def test_canary_start_rejects_non_draft(canary, ops):
    with pytest.raises(RolloutConflict) as raised:
        rollouts.canary_start(candidate_id=canary.candidate_id, user=ops)

    assert raised.value.code == "not_draft"


def test_canary_start_needs_operate_permission(versions):
    manager = make_user("cara", "cs_manager")

    with pytest.raises(RolloutForbidden):
        rollouts.canary_start(candidate_id=versions[1].pk, user=manager)


def test_set_share_audited(canary, ops):
    rollouts.canary_set_share(canary_id=canary.pk, share="0.02", user=ops, note="Quieter week.")

    canary.refresh_from_db()
    assert canary.share == Decimal("0.02")
    event = CanaryEvent.objects.get(kind=CanaryEventKind.SHARE_CHANGED)
    assert event.data == {"from": "5 %", "to": "2 %"}
    assert event.detail == "Share changed from 5 % to 2 %. Quieter week."
    audit = AuditEntry.objects.get(action="canary.share_changed")
    assert audit.before["share"] == "0.0500"
    assert audit.after["share"] == "0.02"


@pytest.mark.parametrize("share", ["0.05", "0.0500", Decimal("0.05")])
def test_set_share_unchanged_rejected(canary, ops, share):
    with pytest.raises(RolloutConflict) as raised:
        rollouts.canary_set_share(canary_id=canary.pk, share=share, user=ops)

    assert raised.value.status == 409
    assert raised.value.code == "unchanged"
    assert raised.value.message == "The share is already 5 %; give a different share."
    assert not CanaryEvent.objects.filter(kind=CanaryEventKind.SHARE_CHANGED).exists()
    assert not AuditEntry.objects.filter(action="canary.share_changed").exists()


SHARE_RULE = (
    "The share must be from 0.01 to 0.05 (1 to 5 % of orders), with at most 4 decimal places"
)


@pytest.mark.parametrize(
    ("share", "shown"),
    [
        ("-1", "-1"),
        (Decimal("-1.0000"), "-1"),
        ("0.2", "0.2"),
        ("0.012345", "0.012345"),
        ("1e999", "1e999"),
        ("9" * 400, "99999999999999999999..."),
        ("abc", "abc"),
        (True, "true"),
    ],
)
def test_share_message_plain(canary, ops, share, shown):
    with pytest.raises(RolloutError) as raised:
        rollouts.canary_set_share(canary_id=canary.pk, share=share, user=ops)

    assert raised.value.field == "share"
    assert raised.value.code == "invalid_share"
    assert raised.value.message == f"{SHARE_RULE}; got {shown}."


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("days", "abc", "Must be a whole number from 1 to 365; got abc."),
        ("days", True, "Must be a whole number from 1 to 365; got true."),
        ("min_orders_per_arm", "7", "Must be a whole number from 1 to 10,000,000; got 7."),
        ("max_exception_increase_pp", "-0.05", "Must be a number of 0 or more; got -0.05."),
        ("max_exception_increase_pp", "abc", "Must be a number of 0 or more; got abc."),
        (
            "max_exception_increase_pp",
            Decimal("0.2000"),
            "The rollback threshold must be more than 0 and at most 0.1 percentage points; "
            "got 0.2.",
        ),
    ],
)
def test_canary_start_messages_without_reprs(versions, ops, field, value, message):
    with pytest.raises(RolloutError) as raised:
        rollouts.canary_start(candidate_id=versions[1].pk, user=ops, **{field: value})

    assert raised.value.field == field
    assert raised.value.message == message


def test_pause_and_resume(canary, ops):
    rollouts.canary_pause(canary_id=canary.pk, user=ops, reason="Warehouse move.")
    with pytest.raises(RolloutConflict):
        rollouts.canary_pause(canary_id=canary.pk, user=ops, reason="Again.")
    rollouts.canary_resume(canary_id=canary.pk, user=ops, note="Move done.")

    canary.refresh_from_db()
    assert canary.status == CanaryStatus.RUNNING
    kinds = list(CanaryEvent.objects.filter(canary=canary).values_list("kind", flat=True))
    assert kinds == ["resumed", "paused", "started"]


def test_resume_after_run_needs_days(canary, ops):
    rollouts.canary_pause(canary_id=canary.pk, user=ops, reason="Run over.")
    Canary.objects.filter(pk=canary.pk).update(ends_at=timezone.now() - timedelta(hours=1))

    with pytest.raises(RolloutError) as raised:
        rollouts.canary_resume(canary_id=canary.pk, user=ops)
    assert raised.value.field == "days"

    rollouts.canary_resume(canary_id=canary.pk, user=ops, days=3)
    canary.refresh_from_db()
    assert canary.status == CanaryStatus.RUNNING
    assert canary.ends_at > timezone.now() + timedelta(days=2)


@pytest.mark.parametrize("days", [3_000_000, 10**12, 0])
def test_resume_rejects_days_out_of_range(canary, ops, days):
    rollouts.canary_pause(canary_id=canary.pk, user=ops, reason="Run over.")
    ends_at = Canary.objects.get(pk=canary.pk).ends_at

    with pytest.raises(RolloutError) as raised:
        rollouts.canary_resume(canary_id=canary.pk, user=ops, days=days)

    assert raised.value.status == 400
    assert raised.value.field == "days"
    canary.refresh_from_db()
    assert canary.status == CanaryStatus.PAUSED
    assert canary.ends_at == ends_at


def test_pause_needs_reason(canary, ops):
    with pytest.raises(RolloutError) as raised:
        rollouts.canary_pause(canary_id=canary.pk, user=ops, reason=" ")

    assert raised.value.field == "reason"


def test_unknown_canary_404(default_policies, ops):
    with pytest.raises(rollouts.RolloutNotFound) as raised:
        rollouts.canary_stop(canary_id=999, user=ops, note="Gone.")

    assert raised.value.status == 404


# --- Promotion and stopping -----------------------------------------------------------------------


def test_promotion_attaches_comparison(canary, versions, ops, channel):
    (candidate_order,) = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)
    (control_order,) = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)
    propose_carrier(candidate_order, "v2")
    propose_carrier(control_order, "v1")

    rollouts.canary_promote(canary_id=canary.pk, user=ops, note="Fewer exceptions, same cost.")

    canary.refresh_from_db()
    assert canary.status == CanaryStatus.PROMOTED
    assert canary.ended_by == ops
    assert canary.end_reason == "Fewer exceptions, same cost."
    assert canary.result["candidate"]["orders"] == 1
    assert canary.result["control"]["decisions"] == 1
    control, candidate = (Version.objects.get(pk=version.pk) for version in versions)
    assert candidate.status == VersionStatus.ACTIVE
    assert candidate.activated_at is not None
    assert control.status == VersionStatus.RETIRED
    assert control.retired_at is not None
    event = CanaryEvent.objects.get(canary=canary, kind=CanaryEventKind.PROMOTED)
    assert event.data["comparison"] == canary.result
    assert event.data["retired"] == [control.pk]
    audit = AuditEntry.objects.get(action="canary.promoted", target_id=str(canary.pk))
    assert audit.actor == ops
    assert audit.before["candidate"]["status"] == "canary"
    assert audit.after["candidate"]["status"] == "active"
    assert audit.after["control"]["status"] == "retired"


def test_promoted_version_decides_everywhere(canary, ops, channel):
    rollouts.canary_promote(canary_id=canary.pk, user=ops, note="Good.")
    (control_order,) = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)

    decision = propose_carrier(control_order, "v2")

    assert decision.canary is None
    assert decision.verdict == Verdict.APPLIED


def test_retired_control_label_still_decides(canary, versions, ops, channel, caplog):
    # Agents still on the previous version right after a promotion keep working.
    rollouts.canary_promote(canary_id=canary.pk, user=ops, note="Good.")
    (order,) = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)

    with caplog.at_level(logging.INFO, logger="guardrails.rollout_routing"):
        decision = propose_carrier(order, "v1")

    assert decision.verdict == Verdict.APPLIED
    assert decision.canary is None
    logged = [record for record in caplog.records if record.message == "retired version proposed"]
    assert len(logged) == 1
    assert logged[0].version == versions[0].pk


def test_promotion_needs_note(canary, ops):
    with pytest.raises(RolloutError) as raised:
        rollouts.canary_promote(canary_id=canary.pk, user=ops, note="")

    assert raised.value.field == "note"
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.RUNNING


def test_promotion_refused_over_limit(canary, ops, channel):
    from orders.fulfilment import fulfilment_exception_record

    candidate_orders = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 2)
    control_orders = orders_in_arm(canary, channel, CanaryArm.CONTROL, 2)
    for order in candidate_orders:
        propose_carrier(order, "v2")
    for order in control_orders:
        propose_carrier(order, "v1")
    fulfilment_exception_record(
        order=candidate_orders[0], stage="pack", reason="damaged", user=None
    )

    with pytest.raises(RolloutConflict) as raised:
        rollouts.canary_promote(canary_id=canary.pk, user=ops, note="Ship it.")

    assert raised.value.code == "exceeds_limit"
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.RUNNING


def test_promotion_from_paused(canary, ops):
    rollouts.canary_pause(canary_id=canary.pk, user=ops, reason="Run complete.")

    rollouts.canary_promote(canary_id=canary.pk, user=ops, note="Good.")

    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.PROMOTED


def test_ended_canary_cannot_promote(canary, ops):
    rollouts.canary_stop(canary_id=canary.pk, user=ops, note="Wrong model.")

    with pytest.raises(RolloutConflict) as raised:
        rollouts.canary_promote(canary_id=canary.pk, user=ops, note="Oops.")

    assert raised.value.code == "canary_ended"


def test_stop_returns_candidate_to_draft(canary, versions, ops):
    rollouts.canary_stop(canary_id=canary.pk, user=ops, note="Wrong prompt.")

    canary.refresh_from_db()
    assert canary.status == CanaryStatus.STOPPED
    assert canary.result["outcome"] == "inconclusive"
    assert Version.objects.get(pk=versions[1].pk).status == VersionStatus.DRAFT
    assert Version.objects.get(pk=versions[0].pk).status == VersionStatus.ACTIVE
    assert AuditEntry.objects.filter(action="canary.stopped").count() == 1
    # Stopped, the candidate may be canaried again.
    assert rollouts.canary_start(candidate_id=versions[1].pk, user=ops).status == "running"


# --- Rule-set promotion ---------------------------------------------------------------------------


@pytest.fixture
def rule_set(default_policies, catalog, ops):
    draft = version_copy(live_version("select_carrier"), confidence_above=Decimal("0.90"))
    return rollouts.version_create(
        kind="rule_set",
        subject="carrier rules",
        label="2026-12",
        changelog="Carrier swaps need 90 % confidence.",
        user=ops,
        policy_versions=[draft],
    )


def test_rule_set_promotion_publishes_live(rule_set, ops):
    canary = canary_of(ops, rule_set)
    draft = rule_set.policy_versions.get()

    rollouts.canary_promote(canary_id=canary.pk, user=ops, note="Calibrated threshold.")

    draft.refresh_from_db()
    assert draft.published_at is not None
    assert draft.published_by == ops
    assert Policy.objects.get(pk=draft.policy_id).live_version == draft
    assert AuditEntry.objects.filter(action="policy_version.published", actor=ops).exists()
    assert Version.objects.get(pk=rule_set.pk).status == VersionStatus.ACTIVE


def test_rule_set_promotion_needs_publish_permission(rule_set, ops):
    canary = canary_of(ops, rule_set)
    operator = make_user("rolf", None)
    for codename in ("operate_canary",):
        from django.contrib.auth.models import Permission

        operator.user_permissions.add(Permission.objects.get(codename=codename))

    with pytest.raises(RolloutForbidden) as raised:
        rollouts.canary_promote(canary_id=canary.pk, user=operator, note="Go.")

    assert raised.value.status == 403
    assert rule_set.policy_versions.get().published_at is None
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.RUNNING


def test_rule_set_canary_conflicts_on_same_policy(rule_set, ops):
    canary_of(ops, rule_set)
    other_draft = version_copy(live_version("select_carrier"), confidence_above=Decimal("0.88"))
    other = rollouts.version_create(
        kind="rule_set",
        subject="other rules",
        label="1",
        changelog="Another try.",
        user=ops,
        policy_versions=[other_draft],
    )

    with pytest.raises(RolloutConflict) as raised:
        rollouts.canary_start(candidate_id=other.pk, user=ops)

    assert raised.value.code == "canary_open"


def test_rule_set_sharing_canary_draft_not_activated(rule_set, ops):
    canary = canary_of(ops, rule_set, name="Carrier rules canary")
    other = rollouts.version_create(
        kind="rule_set",
        subject="other rules",
        label="1",
        changelog="The same draft under another name.",
        user=ops,
        policy_versions=[rule_set.policy_versions.get()],
    )

    with pytest.raises(RolloutConflict) as raised:
        rollouts.version_activate(version_id=other.pk, user=ops, note="Go.")

    assert raised.value.code == "canary_open"
    assert "the candidate of canary Carrier rules canary, which is running" in raised.value.message
    assert rule_set.policy_versions.get().published_at is None
    assert Version.objects.get(pk=other.pk).status == VersionStatus.DRAFT
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.RUNNING


def test_rule_set_activation_publishes(rule_set, ops):
    rollouts.version_activate(version_id=rule_set.pk, user=ops, note="First rule set.")

    assert rule_set.policy_versions.get().published_at is not None
