"""Canary bucketing: a uniform, sticky hash of the order key, and arms that never change."""

from collections import Counter
from decimal import Decimal

import pytest

from guardrails import rollouts
from guardrails.models import CanaryArm, CanaryAssignment, Decision
from guardrails.rollout_selectors import bucket_for, candidate_bucket_limit, order_key
from guardrails.services import decision_propose

from .canary_fixtures import (
    canary_of,
    model_versions,
    order_ids_in_arm,
    orders_in_arm,
    propose_carrier,
    ready_order,
)

KEYS = [f"shop:{5_000_000_000 + number}" for number in range(100_000)]


def share_of(keys: list[str], salt: str, share: Decimal) -> float:
    limit = candidate_bucket_limit(share)
    return sum(bucket_for(key, salt) < limit for key in keys) / len(keys)


# --- bucket_for, pure -----------------------------------------------------------------------------


@pytest.mark.parametrize("share", [Decimal("0.01"), Decimal("0.03"), Decimal("0.05")])
def test_share_within_tolerance_over_100k_keys(share):
    observed = share_of(KEYS, "a1b2c3d4e5f60718", share)

    assert abs(observed - float(share)) <= 0.003, observed


def test_buckets_cover_range_evenly():
    per_tenth = Counter(bucket_for(key, "salt") // 1000 for key in KEYS)

    assert set(per_tenth) == set(range(10))
    # 10,000 expected per tenth; the binomial standard deviation is 95.
    assert all(9_600 <= count <= 10_400 for count in per_tenth.values()), per_tenth
    assert all(0 <= bucket_for(key, "salt") <= 9_999 for key in KEYS[:1000])


def test_same_key_same_bucket():
    first = [bucket_for(key, "salt-1") for key in KEYS[:2000]]
    again = [bucket_for(key, "salt-1") for key in KEYS[:2000]]

    assert first == again
    assert bucket_for("shop:1001", "s") == bucket_for("shop:1001", "s")


def test_different_salts_split_independently():
    limit = candidate_bucket_limit(Decimal("0.05"))
    in_first = {key for key in KEYS if bucket_for(key, "salt-one") < limit}
    in_second = {key for key in KEYS if bucket_for(key, "salt-two") < limit}

    # Independent 5 % splits share 0.25 % of keys (250 of 100,000, standard deviation 16).
    assert 170 <= len(in_first & in_second) <= 330, len(in_first & in_second)
    assert in_first != in_second


def test_bucket_limit_follows_share():
    assert candidate_bucket_limit(Decimal("0.05")) == 500
    assert candidate_bucket_limit(Decimal("0.01")) == 100
    assert candidate_bucket_limit(Decimal("0.0125")) == 125


def test_order_key_is_channel_and_channel_order_id(catalog, channel):
    order = ready_order(channel, "5837219471390")

    assert order_key(order) == "shop:5837219471390"


# --- Stored arms ----------------------------------------------------------------------------------


@pytest.fixture
def canary(default_policies, catalog, ops):
    _, candidate = model_versions(ops)
    return canary_of(ops, candidate, share=Decimal("0.05"))


def test_assignment_matches_bucket(canary, channel):
    candidate_order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]
    control_order = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)[0]

    propose_carrier(candidate_order, "v2")
    propose_carrier(control_order, "v1")

    stored = {a.order_id: a for a in CanaryAssignment.objects.filter(canary=canary)}
    assert stored[candidate_order.pk].arm == CanaryArm.CANDIDATE
    assert stored[control_order.pk].arm == CanaryArm.CONTROL
    assert stored[candidate_order.pk].bucket == bucket_for(order_key(candidate_order), canary.salt)
    assert stored[candidate_order.pk].share == Decimal("0.05")


def test_arm_kept_when_share_changes(canary, channel, ops):
    # Buckets 100 to 499: candidate at 5 %, control once the share drops to 1 %.
    limit_low = candidate_bucket_limit(Decimal("0.01"))
    ids = [
        channel_order_id
        for channel_order_id in order_ids_in_arm(canary, CanaryArm.CANDIDATE, 40)
        if bucket_for(f"shop:{channel_order_id}", canary.salt) >= limit_low
    ]
    early, late = ready_order(channel, ids[0]), ready_order(channel, ids[1])
    propose_carrier(early, "v2")

    rollouts.canary_set_share(canary_id=canary.pk, share=Decimal("0.01"), user=ops)
    decision_propose(
        order_id=early.pk,
        action_code="estimate_ship_date",
        before={},
        after={"ship_date": "2030-01-10"},
        confidence=Decimal("0.9"),
        model_name="gpt-carrier",
        model_version="v2",
    )
    propose_carrier(late, "v1")

    assignments = {a.order_id: a for a in CanaryAssignment.objects.filter(canary=canary)}
    assert assignments[early.pk].arm == CanaryArm.CANDIDATE
    assert assignments[early.pk].share == Decimal("0.05")
    assert assignments[late.pk].arm == CanaryArm.CONTROL
    assert assignments[late.pk].share == Decimal("0.01")
    arms = set(Decision.objects.filter(order=early).values_list("canary_arm", flat=True))
    assert arms == {CanaryArm.CANDIDATE}


def test_arm_kept_across_actions(canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)[0]

    propose_carrier(order, "v1")
    estimate = decision_propose(
        order_id=order.pk,
        action_code="estimate_ship_date",
        before={},
        after={"ship_date": "2030-01-10"},
        confidence=Decimal("0.9"),
        model_name="gpt-carrier",
        model_version="v1",
    )

    assert CanaryAssignment.objects.filter(canary=canary, order=order).count() == 1
    assert estimate.canary == canary
    assert estimate.canary_arm == CanaryArm.CONTROL


def test_priority_sku_orders_stay_on_control(default_policies, catalog, channel, ops):
    _, candidate = model_versions(ops)
    canary = canary_of(ops, candidate, exclude_priority_skus=True)
    catalog[1].is_priority = True
    catalog[1].save(update_fields=["is_priority"])
    ids = order_ids_in_arm(canary, CanaryArm.CANDIDATE, 2)
    plain = ready_order(channel, ids[0])
    priority = ready_order(channel, ids[1], sku_code=catalog[1].code)

    assert rollouts.canary_assignment_for(
        order=plain, action_code="select_carrier", model_name="gpt-carrier"
    )["arm"] == (CanaryArm.CANDIDATE)
    found = rollouts.canary_assignment_for(
        order=priority, action_code="select_carrier", model_name="gpt-carrier"
    )
    assert found["arm"] == CanaryArm.CONTROL
    assert found["model_version"] == "v1"


def test_assignment_for_assigns_once(canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]

    first = rollouts.canary_assignment_for(
        order=order, action_code="select_carrier", model_name="gpt-carrier"
    )
    second = rollouts.canary_assignment_for(
        order=order, action_code="estimate_ship_date", model_name="gpt-carrier"
    )

    assert first == second
    assert first == {
        "canary": canary.pk,
        "name": canary.name,
        "kind": "model",
        "arm": CanaryArm.CANDIDATE,
        "model_version": "v2",
        "control_model_version": "v1",
        "config": {},
        "shadow": False,
    }
    assert CanaryAssignment.objects.filter(order=order).count() == 1


def test_assignment_for_other_model_is_none(canary, channel):
    order = ready_order(channel, "42")

    assert (
        rollouts.canary_assignment_for(
            order=order, action_code="select_carrier", model_name="other-model"
        )
        is None
    )
    assert not CanaryAssignment.objects.exists()


def test_stored_arm_wins_over_hash(canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)[0]
    stored = CanaryAssignment.objects.create(
        canary=canary, order=order, arm=CanaryArm.CANDIDATE, bucket=1, share=Decimal("0.05")
    )

    assert rollouts.canary_assign(canary=canary, order=order) == stored
    assert propose_carrier(order, "v2").canary_arm == CanaryArm.CANDIDATE
