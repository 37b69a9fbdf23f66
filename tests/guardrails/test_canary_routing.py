"""Canary routing in decision_propose: wrong arms, shadow candidates, rule-set canaries,
paused canaries, versions that may not decide, and built-in recommenders."""

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.apps import apps as django_apps
from django.db import connection

from guardrails import rollouts
from guardrails.models import CanaryArm, CanaryAssignment, Decision, Verdict, Version
from guardrails.recommenders.carrier import carrier_recommend
from guardrails.services import DecisionConflict

from .backtest_fixtures import live_version, version_copy
from .canary_fixtures import (
    canary_of,
    model_versions,
    order_ids_in_arm,
    orders_in_arm,
    propose_carrier,
    ready_order,
)
from .conftest import channel_grant
from .recommender_fixtures import rate_create, service_set


@pytest.fixture
def versions(default_policies, catalog, ops):
    return model_versions(ops)


@pytest.fixture
def canary(versions, ops):
    return canary_of(ops, versions[1])


# --- Model canaries -------------------------------------------------------------------------------


def test_candidate_arm_applied_with_candidate(canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]

    decision = propose_carrier(order, "v2")

    assert decision.verdict == Verdict.APPLIED
    assert decision.canary == canary
    assert decision.canary_arm == CanaryArm.CANDIDATE
    assert decision.shadow_verdict == ""
    canary_reason = [reason for reason in decision.reasons if reason["rule"] == "canary"]
    assert canary_reason[0]["data"] == {"canary": canary.pk, "arm": "candidate"}


def test_candidate_label_on_control_order_409(canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)[0]

    with pytest.raises(DecisionConflict) as raised:
        propose_carrier(order, "v2")

    assert raised.value.status == 409
    assert raised.value.code == "wrong_arm"
    assert raised.value.data == {"canary": canary.pk, "arm": "control", "model_version": "v1"}
    assert "propose with v1" in raised.value.message
    assert not Decision.objects.exists()
    order.refresh_from_db()
    assert order.carrier_service.code == "ground"
    assert order.carrier_service.carrier.code == "ups"


def test_control_label_on_candidate_order_409(canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]

    with pytest.raises(DecisionConflict) as raised:
        propose_carrier(order, "v1")

    assert raised.value.code == "wrong_arm"
    assert raised.value.data["arm"] == "candidate"
    assert raised.value.data["model_version"] == "v2"
    assert not Decision.objects.exists()


def test_wrong_arm_409_through_api(canary, channel, integration_user):
    from rest_framework.test import APIClient

    order = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)[0]
    client = APIClient()
    client.force_authenticate(channel_grant(integration_user, channel))

    response = client.post(
        "/api/v1/decisions/",
        {
            "action": "select_carrier",
            "order": order.pk,
            "before": {"carrier_service": "ups/ground"},
            "after": {"carrier_service": "fedex/ground"},
            "confidence": "0.95",
            "model_name": "gpt-carrier",
            "model_version": "v2",
        },
        format="json",
    )

    assert response.status_code == 409, response.json()
    assert response.json()["error"]["code"] == "wrong_arm"


def test_other_model_not_routed(canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]

    decision = propose_carrier(order, "2024-06", model_name="another-model")

    assert decision.canary is None
    assert decision.canary_arm == ""
    assert not CanaryAssignment.objects.exists()


def test_channel_scope_limits_canary(versions, ops, channel):
    from .backtest_fixtures import channel_create

    other = channel_create("amazon")
    canary = canary_of(ops, versions[1], channel=other)
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]

    assert propose_carrier(order, "v1").canary is None


def test_action_scope_limits_canary(versions, ops, channel):
    canary = canary_of(ops, versions[1], action="estimate_ship_date")
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]

    assert propose_carrier(order, "v1").canary is None


# --- Shadow canaries ------------------------------------------------------------------------------


@pytest.fixture
def shadow_canary(versions, ops):
    return canary_of(ops, versions[1], shadow=True)


def test_shadow_candidate_recorded_never_applied(shadow_canary, channel):
    order = orders_in_arm(shadow_canary, channel, CanaryArm.CANDIDATE, 1)[0]

    decision = propose_carrier(order, "v2")

    assert decision.verdict == Verdict.RECOMMENDATION_ONLY
    assert decision.shadow_verdict == Verdict.APPLIED
    assert decision.applied_at is None
    assert decision.review_item is None
    assert decision.canary_arm == CanaryArm.CANDIDATE
    shadow = [reason for reason in decision.reasons if reason["rule"] == "canary_shadow"]
    assert shadow[0]["outcome"] == "info"
    assert "not applied" in shadow[0]["message"]
    order.refresh_from_db()
    assert order.carrier_service.carrier.code == "ups"


def test_shadow_control_version_applied_on_candidate_order(shadow_canary, channel):
    order = orders_in_arm(shadow_canary, channel, CanaryArm.CANDIDATE, 1)[0]

    shadow = propose_carrier(order, "v2")
    live = propose_carrier(order, "v1")

    assert shadow.verdict == Verdict.RECOMMENDATION_ONLY
    assert live.verdict == Verdict.APPLIED
    assert live.applied_at is not None
    # Both decisions carry the order's arm; only the shadow candidate's has a shadow verdict.
    assert shadow.canary_arm == CanaryArm.CANDIDATE
    assert live.canary == shadow_canary
    assert live.canary_arm == CanaryArm.CANDIDATE
    assert live.shadow_verdict == ""
    canary_reason = [reason for reason in live.reasons if reason["rule"] == "canary"]
    assert canary_reason[0]["data"] == {"canary": shadow_canary.pk, "arm": "candidate"}
    order.refresh_from_db()
    assert order.carrier_service.carrier.code == "fedex"


def test_shadow_control_order_tagged_control(shadow_canary, channel):
    order = orders_in_arm(shadow_canary, channel, CanaryArm.CONTROL, 1)[0]

    live = propose_carrier(order, "v1")

    assert live.canary_arm == CanaryArm.CONTROL
    assert live.shadow_verdict == ""


def test_shadow_candidate_on_control_order_409(shadow_canary, channel):
    order = orders_in_arm(shadow_canary, channel, CanaryArm.CONTROL, 1)[0]

    with pytest.raises(DecisionConflict) as raised:
        propose_carrier(order, "v2")

    assert raised.value.code == "wrong_arm"


def test_shadow_proposal_beside_pending_review(shadow_canary, channel):
    order = orders_in_arm(shadow_canary, channel, CanaryArm.CANDIDATE, 1)[0]
    queued = rollouts_propose_low_confidence(order, "v1")

    shadow = propose_carrier(order, "v2")

    assert queued.verdict == Verdict.QUEUED_FOR_REVIEW
    assert shadow.verdict == Verdict.RECOMMENDATION_ONLY


def rollouts_propose_low_confidence(order, model_version):
    from guardrails.services import decision_propose

    return decision_propose(
        order_id=order.pk,
        action_code="select_carrier",
        before={"carrier_service": "ups/ground"},
        after={"carrier_service": "fedex/ground"},
        confidence=Decimal("0.50"),
        model_name="gpt-carrier",
        model_version=model_version,
    )


# --- Canaries that are not running, versions that may not decide ----------------------------------


def test_paused_canary_routes_nothing(canary, channel, ops):
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]
    rollouts.canary_pause(canary_id=canary.pk, user=ops, reason="Checking a carrier outage.")

    decision = propose_carrier(order, "v1")

    assert decision.canary is None
    assert decision.verdict == Verdict.APPLIED
    assert (
        rollouts.canary_assignment_for(
            order=order, action_code="select_carrier", model_name="gpt-carrier"
        )
        is None
    )


def test_candidate_label_rejected_while_paused(canary, channel, ops):
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]
    rollouts.canary_pause(canary_id=canary.pk, user=ops, reason="Checking a carrier outage.")

    with pytest.raises(DecisionConflict) as raised:
        propose_carrier(order, "v2")

    assert raised.value.code == "version_not_active"
    assert raised.value.data == {"model_version": "v1"}
    assert "which is paused" in raised.value.message


def test_draft_label_decides_without_canary(versions, channel):
    # Recording a version whose label agents already use must not stop them.
    order = ready_order(channel, "77")

    decision = propose_carrier(order, "v2")

    assert decision.verdict == Verdict.APPLIED
    assert decision.canary is None


def test_stopped_candidate_label_rejected(canary, channel, ops):
    rollouts.canary_stop(canary_id=canary.pk, user=ops, note="Wrong prompt.")
    order = ready_order(channel, "79")

    with pytest.raises(DecisionConflict) as raised:
        propose_carrier(order, "v2")

    assert raised.value.status == 409
    assert raised.value.code == "version_not_active"
    assert raised.value.data == {"model_version": "v1"}
    assert raised.value.message == (
        f"gpt-carrier v2 is the candidate of canary {canary.name}, which was stopped, so it "
        "may not decide here; propose with the active version v1."
    )
    assert not Decision.objects.filter(order=order).exists()


def test_rolled_back_candidate_label_rejected(canary, channel):
    from orders.fulfilment import fulfilment_exception_record

    candidate_orders = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 2)
    for order in candidate_orders:
        propose_carrier(order, "v2")
    for order in orders_in_arm(canary, channel, CanaryArm.CONTROL, 2):
        propose_carrier(order, "v1")
    fulfilment_exception_record(
        order=candidate_orders[0], stage="pick", reason="wrong_item", user=None
    )
    assert rollouts.canary_evaluate(canary_id=canary.pk)["action_taken"] == "rolled_back"
    order = ready_order(channel, "80")

    with pytest.raises(DecisionConflict) as raised:
        propose_carrier(order, "v2")

    assert raised.value.code == "version_not_active"
    assert "which was rolled back" in raised.value.message
    assert propose_carrier(order, "v1").verdict == Verdict.APPLIED


def test_recanaried_candidate_decides_in_new_canary(canary, channel, ops):
    rollouts.canary_stop(canary_id=canary.pk, user=ops, note="Paused for a fix.")
    again = canary_of(ops, canary.candidate)
    order = orders_in_arm(again, channel, CanaryArm.CANDIDATE, 1)[0]

    decision = propose_carrier(order, "v2")

    assert decision.canary == again
    assert decision.verdict == Verdict.APPLIED


def test_candidate_label_outside_canary_scope_rejected(versions, ops, channel):
    canary = canary_of(ops, versions[1], action="estimate_ship_date")
    order = ready_order(channel, "81")

    with pytest.raises(DecisionConflict) as raised:
        propose_carrier(order, "v2")

    assert raised.value.code == "version_not_active"
    assert f"canary {canary.name}, which does not cover this action" in raised.value.message


def test_unrecorded_label_still_decides(versions, channel):
    order = ready_order(channel, "78")

    assert propose_carrier(order, "v0-unrecorded").verdict == Verdict.APPLIED


# --- Rule-set canaries ----------------------------------------------------------------------------


@pytest.fixture
def strict_rule_set(default_policies, catalog, ops):
    """A rule set whose select_carrier version requires confidence above 0.99."""
    draft = version_copy(live_version("select_carrier"), confidence_above=Decimal("0.99"))
    return rollouts.version_create(
        kind="rule_set",
        subject="carrier rules",
        label="2026-12",
        changelog="Carrier swaps need near-certain confidence.",
        user=ops,
        policy_versions=[draft],
    )


def test_rule_set_candidate_judged_by_draft(strict_rule_set, channel, ops):
    canary = canary_of(ops, strict_rule_set)
    candidate_order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]
    control_order = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)[0]

    strict = propose_carrier(candidate_order, "any")
    live = propose_carrier(control_order, "any")

    draft = strict_rule_set.policy_versions.get()
    assert strict.verdict == Verdict.QUEUED_FOR_REVIEW
    assert strict.policy_version == draft
    assert strict.canary_arm == CanaryArm.CANDIDATE
    assert live.verdict == Verdict.APPLIED
    assert live.policy_version == live_version("select_carrier")
    assert live.canary_arm == CanaryArm.CONTROL


def test_rule_set_shadow_records_draft_verdict(strict_rule_set, channel, ops):
    canary = canary_of(ops, strict_rule_set, shadow=True)
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]

    decision = propose_carrier(order, "any")

    assert decision.verdict == Verdict.APPLIED
    assert decision.shadow_verdict == Verdict.QUEUED_FOR_REVIEW
    assert decision.policy_version == live_version("select_carrier")
    assert decision.applied_at is not None


def test_rule_set_covers_other_actions_not(strict_rule_set, channel, ops):
    canary = canary_of(ops, strict_rule_set)
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]
    from guardrails.services import decision_propose

    estimate = decision_propose(
        order_id=order.pk,
        action_code="estimate_ship_date",
        before={},
        after={"ship_date": "2030-01-10"},
        confidence=Decimal("0.9"),
        model_name="any",
        model_version="any",
    )

    assert estimate.canary is None


# --- Built-in recommenders ------------------------------------------------------------------------


NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_carrier_recommender_stamps_assigned_version(default_policies, catalog, channel, ops):
    with time_machine.travel(NOW, tick=False):
        model_versions(ops, subject="omsguard-carrier", active="1", candidate="2")
        candidate = Version.objects.get(subject="omsguard-carrier", label="2")
        canary = canary_of(ops, candidate)
        service_set("ups/ground", reliability="0.96", transit_days=5)
        service_set("usps/ground_advantage", reliability="0.99", transit_days=5)
        rate_create("ups/ground", "10.00")
        rate_create("usps/ground_advantage", "6.00")
        in_candidate = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]
        in_control = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)[0]

        on_candidate = carrier_recommend(order=in_candidate)
        on_control = carrier_recommend(order=in_control)

    assert on_candidate.decision.model_version == "2"
    assert on_candidate.decision.canary_arm == CanaryArm.CANDIDATE
    assert on_candidate.as_dict()["model"]["version"] == "2"
    assert on_control.decision.model_version == "1"
    assert on_control.decision.canary_arm == CanaryArm.CONTROL


# --- Races ----------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_assignment_one_row(catalog, channel):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for concurrent transactions")
    from guardrails.defaults import default_policies_load
    from tests.conftest import ensure_role_groups, make_user

    ensure_role_groups()
    _grant_rollouts()
    default_policies_load()
    ops = make_user("race-ops", "ops_manager")
    _, candidate = model_versions(ops)
    canary = canary_of(ops, candidate)
    order = ready_order(channel, order_ids_in_arm(canary, CanaryArm.CANDIDATE, 1)[0])
    barrier = threading.Barrier(4)
    arms: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            found = rollouts.canary_assignment_for(
                order=order, action_code="select_carrier", model_name="gpt-carrier"
            )
            arms.append(found["arm"])
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
    assert arms == [CanaryArm.CANDIDATE] * 4
    assert CanaryAssignment.objects.filter(canary=canary, order=order).count() == 1


def _grant_rollouts() -> None:
    """Grant the rollout permissions again after a transactional test's flush."""
    import importlib

    migration = importlib.import_module("guardrails.migrations.0008_canary_roles_and_schedule")
    migration.grant_rollout_permissions(django_apps, None)
