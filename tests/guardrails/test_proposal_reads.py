"""Hand-written reads of a proposal give what the ORM queries they replaced give.

proposal_reads: one statement on PostgreSQL for the pending proposal, the priority listing and
the line costs. order_channel_grant: the channel check of the decisions API.
"""

from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Exists, OuterRef

from catalog.models import Sku
from guardrails.config_cache import stamp_token
from guardrails.models import ActionType, Decision
from guardrails.selectors import (
    ProposalReads,
    decision_pending,
    order_channel_grant,
    order_line_costs,
    priority_listed,
    proposal_reads,
)
from orders.models import ChannelApiGrant, Order, OrderLine, PriorityCustomer
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SUBSTITUTION,
    bot_api_fixture,
    locations_fixture,
    order_fixture,
    proposal,
)

URL = "/api/v1/decisions/"


@pytest.fixture(autouse=True)
def _postgresql_only(db):
    if connection.vendor != "postgresql":
        pytest.skip("other databases run the ORM queries themselves")


def _orm_reads(order: Order, action: ActionType) -> ProposalReads:
    return ProposalReads(
        pending=decision_pending(order=order, action=action),
        priority_listed=priority_listed(order),
        line_costs=order_line_costs(order),
    )


def _assert_same(order: Order, action_code: str) -> ProposalReads:
    action = ActionType.objects.get(code=action_code)
    order = Order.objects.select_related("channel").get(pk=order.pk)
    ours = proposal_reads(order=order, action=action)
    orm = _orm_reads(order, action)

    assert ours.pending == orm.pending
    assert ours.priority_listed == orm.priority_listed
    # Line order does not matter to the margin, which sums over the lines.
    assert sorted(ours.line_costs) == sorted(orm.line_costs)
    return ours


def test_plain_order_matches(order):
    reads = _assert_same(order, "substitute_sku")

    assert reads.pending is None
    assert not reads.priority_listed
    assert reads.line_costs == [
        (Decimal("19.99"), 1, Sku.objects.get(code="TEE-CLASSIC-BLK-M").cost, "USD")
    ]


def test_order_without_lines_matches(order):
    order.lines.all().delete()

    reads = _assert_same(order, "substitute_sku")

    assert reads.line_costs == []


def test_lines_without_sku_or_cost_match(order):
    Sku.objects.filter(code="TEE-CLASSIC-WHT-M").update(cost=None)
    OrderLine.objects.create(
        order=order, position=2, title="No SKU", quantity=3, unit_price=Decimal("5"), raw={}
    )
    OrderLine.objects.create(
        order=order,
        position=3,
        title="No cost",
        quantity=2,
        unit_price=Decimal("7.50"),
        sku=Sku.objects.get(code="TEE-CLASSIC-WHT-M"),
        raw={},
    )

    reads = _assert_same(order, "substitute_sku")

    assert len(reads.line_costs) == 3


LISTINGS = {
    "email in other case": ({"email": "ADA@Example.com"}, {}, True),
    "customer id": ({"customer_id": "cust-7"}, {"customer_id": "cust-7"}, True),
    "other customer id": ({"customer_id": "cust-8"}, {"customer_id": "cust-7"}, False),
    # The order has no email: a listing by id only must not match it through its empty email.
    "empty email": ({"customer_id": "cust-8"}, {"customer_email": ""}, False),
    "other email": ({"email": "bob@example.com"}, {}, False),
}


@pytest.mark.parametrize("case", LISTINGS)
def test_priority_listing_matches(order, case):
    listing, order_fields, expected = LISTINGS[case]
    PriorityCustomer.objects.create(channel=order.channel, **listing)
    Order.objects.filter(pk=order.pk).update(**order_fields)

    reads = _assert_same(order, "substitute_sku")

    assert reads.priority_listed is expected


def test_listing_on_other_channel_ignored(order, channel):
    from catalog.models import Channel, ChannelKind

    other = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="other", webhook_secret="s")
    PriorityCustomer.objects.create(channel=other, email="ada@example.com")

    reads = _assert_same(order, "substitute_sku")

    assert not reads.priority_listed


def _queued_decision(bot_api, order) -> Decision:
    response = bot_api.post(
        URL, proposal(order, "substitute_sku", *SUBSTITUTION, confidence="0.92"), "json"
    )
    assert response.status_code == 201, response.json()
    decision = Decision.objects.get(pk=response.json()["id"])
    assert decision.review_item_id is not None
    return decision


def test_pending_proposal_matches(bot_api, order):
    decision = _queued_decision(bot_api, order)

    reads = _assert_same(order, "substitute_sku")
    other_action = _assert_same(order, "select_carrier")

    assert reads.pending == (decision.pk, decision.review_item_id)
    assert other_action.pending is None


@pytest.mark.parametrize(
    "item_change",
    [{"kind": ReviewKind.AUDIT_SAMPLE}, {"status": ReviewStatus.ACCEPTED}],
    ids=["audit sample", "decided"],
)
def test_no_pending_after_item_change(bot_api, order, item_change):
    decision = _queued_decision(bot_api, order)
    ReviewItem.objects.filter(pk=decision.review_item_id).update(**item_change)

    reads = _assert_same(order, "substitute_sku")

    assert reads.pending is None


def test_pending_proposal_gets_409(bot_api, order):
    decision = _queued_decision(bot_api, order)

    response = bot_api.post(
        URL, proposal(order, "substitute_sku", *SUBSTITUTION, confidence="0.92"), "json"
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "proposal_pending"
    assert response.json()["error"]["message"].startswith(f"Decision #{decision.pk} proposes")


def _orm_channel_grant(order_id: int, user_id: int | None) -> tuple[str, bool] | None:
    granted = ChannelApiGrant.objects.filter(user_id=user_id, channel=OuterRef("channel"))
    return Order.objects.filter(pk=order_id).values_list("channel__code", Exists(granted)).first()


def test_channel_grant_matches(order, integration_user, manager):
    ChannelApiGrant.objects.create(user=integration_user, channel=order.channel)
    cases = [
        (order.pk, integration_user.pk, (order.channel.code, True)),
        (order.pk, manager.pk, (order.channel.code, False)),
        (order.pk, None, (order.channel.code, False)),
        (order.pk + 1000, integration_user.pk, None),
        (-1, integration_user.pk, None),
        # Outside bigint: the ORM finds no row, so the statement must not fail on it either.
        (10**30, integration_user.pk, None),
        (-(10**30), integration_user.pk, None),
    ]
    for order_id, user_id, expected in cases:
        grant = order_channel_grant(order_id=order_id, user_id=user_id)
        ours = None if grant is None else (grant.channel_code, grant.granted)

        assert ours == expected, (order_id, user_id)
        assert ours == _orm_channel_grant(order_id, user_id), (order_id, user_id)


def test_channel_grant_reads_stamp_token(order):
    grant = order_channel_grant(order_id=order.pk, user_id=None)

    assert grant.stamp_token is not None
    assert grant.stamp_token == stamp_token()
