"""A KPI's drill-down page: definition, split by channel and dimension, and the records
behind the number, paginated and free of customer names and addresses."""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape

from catalog.models import Channel, ChannelKind
from guardrails.models import ActionType, Decision, DecisionOutcome, ReviewOutcome, RiskTier
from inventory.models import InventoryDiscrepancy, Location, LocationKind
from monitoring.kpis import COUNTERS, KPIS
from monitoring.models import Granularity, KpiRollup
from orders.models import (
    Chargeback,
    Delivery,
    DeliveryOutcome,
    FulfilmentException,
    Order,
    OrderEvent,
    OrderReturn,
    OrderStatus,
    ReturnAttribution,
    ReturnReason,
    Shipment,
    ShipmentStatus,
)
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 31, 12, 30, tzinfo=UTC)
IN_PERIOD = datetime(2025, 3, 20, 9, 0, tzinfo=UTC)
BEFORE_PERIOD = datetime(2025, 2, 20, 9, 0, tzinfo=UTC)
# Customer data every order carries; none of it may appear on a drill-down page.
CUSTOMER_NAME = "Ada Quill"
CUSTOMER_EMAIL = "ada.quill@example.com"
STREET = "12 Birch Lane"
PII = ("Ada", "Quill", CUSTOMER_EMAIL, "Birch", "Austin", "78701")


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def shop(db) -> Channel:
    return Channel.objects.create(kind=ChannelKind.SHOPIFY, code="shop")


@pytest.fixture
def market(db) -> Channel:
    return Channel.objects.create(kind=ChannelKind.AMAZON, code="market")


def viewer(username: str = "lena", *, staff: bool = False):
    user = make_user(username, None)
    user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    if staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        user.user_permissions.add(Permission.objects.get(codename="view_decision"))
    return user


@pytest.fixture
def viewer_client(client, shop, market):
    client.force_login(viewer())
    return client


def kpi_url(slug: str, **params) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"/dashboard/kpi/{slug}/" + (f"?{query}" if query else "")


def order_create(channel: Channel, number: str, *, total: str = "44.98") -> Order:
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id=f"wh-{number}",
        topic="orders/create",
        body=f'{{"customer": "{CUSTOMER_NAME}", "address1": "{STREET}"}}'.encode(),
        signature_valid=True,
    )
    return Order.objects.create(
        channel=channel,
        delivery=delivery,
        channel_order_id=f"co-{number}",
        order_number=number,
        status=OrderStatus.ON_HOLD,
        currency="USD",
        subtotal=Decimal(total),
        shipping_total=Decimal("0"),
        tax_total=Decimal("0"),
        discount_total=Decimal("0"),
        total=Decimal(total),
        customer_name=CUSTOMER_NAME,
        customer_email=CUSTOMER_EMAIL,
        shipping_address={
            "name": CUSTOMER_NAME,
            "address1": STREET,
            "city": "Austin",
            "zip": "78701",
            "country_code": "US",
        },
    )


def event_at(order: Order, kind: str, at: datetime, **data) -> OrderEvent:
    event = OrderEvent.objects.create(
        order=order,
        kind=kind,
        message=f"{kind} for {CUSTOMER_NAME}",
        actor_kind="system",
        data=data,
    )
    OrderEvent.objects.filter(pk=event.pk).update(created_at=at)
    return event


def rows_of(html: str, title: str) -> list[str]:
    """The body rows of the records table under the heading that starts with `title`."""
    start = html.index(f"<h3>{title}")
    section = html[start : html.index("</section>", start)]
    return re.findall(r"<tr>(.*?)</tr>", section.split("<tbody>", 1)[-1], re.S)


def section_count(html: str, title: str) -> int:
    match = re.search(rf"<h3>{re.escape(title)}[^<]*<span class=\"muted\">\((\d+)\)", html)
    assert match, f"no section {title!r}"
    return int(match.group(1))


# --- Records -------------------------------------------------------------------------------


def review_item(order: Order, kind: str, *, opened: datetime, **fields) -> ReviewItem:
    item = ReviewItem.objects.create(
        kind=kind, order=order, reason="Check", source_data={"name": CUSTOMER_NAME}, **fields
    )
    ReviewItem.objects.filter(pk=item.pk).update(created_at=opened)
    return item


def problem_at(order: Order, at: datetime, kind: str = ReviewKind.UNMAPPED_SKU) -> ReviewItem:
    """A review item for a data problem: what the order error rate counts, once per order."""
    return review_item(order, kind, opened=at)


def test_data_problems_and_failed_deliveries_listed(viewer_client, shop):
    first = order_create(shop, "#1001")
    problem_at(first, IN_PERIOD)
    problem_at(first, IN_PERIOD + timedelta(hours=2), ReviewKind.ADDRESS)  # counted once
    second = order_create(shop, "#1002")
    problem_at(second, IN_PERIOD + timedelta(days=1), ReviewKind.ADDRESS)
    earlier = order_create(shop, "#0999")
    problem_at(earlier, BEFORE_PERIOD)
    problem_at(earlier, IN_PERIOD)  # not its first problem
    proposal = order_create(shop, "#1003")
    review_item(proposal, ReviewKind.ADDRESS, opened=IN_PERIOD, action_code="correct_address")
    failed = Delivery.objects.create(
        channel=shop,
        delivery_id="wh-broken",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
        outcome=DeliveryOutcome.FAILED,
    )
    Delivery.objects.filter(pk=failed.pk).update(received_at=IN_PERIOD)

    html = viewer_client.get(kpi_url("order_error_rate")).content.decode()

    problems = rows_of(html, "Review items")
    assert len(problems) == 2
    assert "#1002" in problems[0]
    assert f'href="/orders/{second.pk}/"' in problems[0]
    assert "#1001" in problems[1]
    assert "2025-03-20 09:00" in problems[1]
    assert "Unmapped SKU" in problems[1]
    assert "#0999" not in html
    assert "#1003" not in html  # an AI proposal is no data problem
    deliveries = rows_of(html, "Deliveries")
    assert len(deliveries) == 1
    assert "wh-broken" in deliveries[0]


def test_records_paginated(viewer_client, shop):
    for number in range(30):
        problem_at(order_create(shop, f"#{2000 + number}"), IN_PERIOD + timedelta(minutes=number))

    first = viewer_client.get(kpi_url("order_error_rate")).content.decode()
    second = viewer_client.get(kpi_url("order_error_rate", page=2)).content.decode()

    assert section_count(first, "Review items") == 30
    assert len(rows_of(first, "Review items")) == 25
    assert "#2029" in rows_of(first, "Review items")[0]  # newest first
    assert "Page 1 of 2" in first
    assert 'href="?page=2"' in first
    assert [row for row in rows_of(second, "Review items") if "#2000" in row]
    assert len(rows_of(second, "Review items")) == 5
    assert 'href="?page=1"' in second


def test_page_beyond_the_last_shows_the_last(viewer_client, shop):
    problem_at(order_create(shop, "#1"), IN_PERIOD)

    response = viewer_client.get(kpi_url("order_error_rate", page="x9"))

    assert response.status_code == 200
    assert len(rows_of(response.content.decode(), "Review items")) == 1


def test_records_follow_period(viewer_client, shop):
    problem_at(order_create(shop, "#3001"), datetime(2025, 3, 20, tzinfo=UTC))

    seven = viewer_client.get(kpi_url("order_error_rate", days=7)).content.decode()
    thirty = viewer_client.get(kpi_url("order_error_rate", days=30)).content.decode()

    assert section_count(seven, "Review items") == 0
    assert section_count(thirty, "Review items") == 1


def test_records_follow_channel(viewer_client, shop, market):
    problem_at(order_create(shop, "#S1"), IN_PERIOD)
    problem_at(order_create(market, "#M1"), IN_PERIOD)

    html = viewer_client.get(kpi_url("order_error_rate", channel="market")).content.decode()

    assert [row for row in rows_of(html, "Review items") if "#M1" in row]
    assert "#S1" not in html


def test_records_follow_dimension(viewer_client, shop):
    order = order_create(shop, "#4001")
    for stage in ("pick", "pick", "pack"):
        FulfilmentException.objects.create(
            order=order,
            channel=shop,
            stage=stage,
            reason="wrong_item",
            note=f"Customer {CUSTOMER_NAME} at {STREET} called",
            occurred_at=IN_PERIOD,
        )

    every = viewer_client.get(kpi_url("fulfilment_exceptions")).content.decode()
    pick = viewer_client.get(kpi_url("fulfilment_exceptions", dimension="pick")).content.decode()

    assert section_count(every, "Fulfilment exceptions") == 3
    assert section_count(pick, "Fulfilment exceptions") == 2
    assert "stage <strong>pick</strong>" in pick


def test_returns_of_fulfilment_only(viewer_client, shop):
    order = order_create(shop, "#5001")
    for number, attribution in enumerate(
        [ReturnAttribution.FULFILMENT, ReturnAttribution.CUSTOMER, ReturnAttribution.FULFILMENT]
    ):
        OrderReturn.objects.create(
            order=order,
            channel=shop,
            return_id=f"r-{number}",
            reason=ReturnReason.WRONG_ITEM,
            attributed_to=attribution,
            received_at=IN_PERIOD + timedelta(hours=number),
        )

    html = viewer_client.get(kpi_url("fulfilment_return_rate")).content.decode()

    rows = rows_of(html, "Order returns")
    assert len(rows) == 2
    assert "r-2" in rows[0]
    assert "r-0" in rows[1]


def test_latency_lists_slowest_first(viewer_client, shop):
    quick = order_create(shop, "#Q")
    slow = order_create(shop, "#S")
    for order, arrived in ((quick, IN_PERIOD - timedelta(minutes=2)), (slow, BEFORE_PERIOD)):
        Delivery.objects.filter(orders=order).update(received_at=arrived)
        event_at(order, "order.ready", IN_PERIOD)

    html = viewer_client.get(kpi_url("decision_latency_p95")).content.decode()

    rows = rows_of(html, "Order events")
    assert "#S" in rows[0]
    assert "28 days" in rows[0]
    assert "#Q" in rows[1]
    assert "2 min" in rows[1]
    assert '<th scope="col">Delivery to decision</th>' in html


def decision_create(order: Order, **fields) -> Decision:
    action, _created = ActionType.objects.get_or_create(
        code="substitute_sku",
        defaults={
            "name": "Substitute",
            "risk_tier": RiskTier.MEDIUM,
            "review_kind": "substitution",
        },
    )
    return Decision.objects.create(
        action=action,
        order=order,
        channel=order.channel,
        model_name="recommender",
        model_version="3",
        before={"address": STREET},
        after={"address": STREET},
        confidence=Decimal("0.9512"),
        verdict="applied",
        facts={"customer": CUSTOMER_NAME},
        **fields,
    )


def test_disagreements_listed_with_admin_link_for_staff(client, shop, market):
    order = order_create(shop, "#6001")
    disagreed = decision_create(
        order, review_outcome=ReviewOutcome.DISAGREED, reviewed_at=IN_PERIOD
    )
    decision_create(order, review_outcome=ReviewOutcome.AGREED, reviewed_at=IN_PERIOD)

    client.force_login(viewer("plain"))
    plain = client.get(kpi_url("disagreement_rate")).content.decode()
    client.force_login(viewer("olivia", staff=True))
    staff = client.get(kpi_url("disagreement_rate")).content.decode()

    (row,) = rows_of(plain, "Decisions")
    assert f"#{disagreed.pk}" in row
    assert "0.95" in row
    assert "recommender 3" in row
    assert "/admin/" not in row
    (row,) = rows_of(staff, "Decisions")
    assert f'href="/admin/guardrails/decision/{disagreed.pk}/change/"' in row


def test_error_detection_time(viewer_client, shop):
    decision = decision_create(
        order_create(shop, "#7001"),
        applied_at=IN_PERIOD - timedelta(hours=3),
        outcome=DecisionOutcome.ERROR,
        labelled_at=IN_PERIOD,
    )

    html = viewer_client.get(kpi_url("ai_error_mttd")).content.decode()

    (row,) = rows_of(html, "Decisions")
    assert f"#{decision.pk}" in row
    assert "3 h" in row


def test_substitution_acceptance_lists_both_outcomes(viewer_client, shop):
    order = order_create(shop, "#8001")
    decision_create(order, applied_at=IN_PERIOD)
    decision_create(order, review_outcome=ReviewOutcome.DISAGREED, reviewed_at=IN_PERIOD)

    html = viewer_client.get(kpi_url("substitution_acceptance_rate")).content.decode()

    assert section_count(html, "Substitutions applied as the AI proposed them") == 1
    assert section_count(html, "Substitutions a reviewer rejected or revised") == 1


def test_queue_size_lists_open_items_oldest_first(viewer_client, shop):
    order = order_create(shop, "#9001")
    newer = review_item(order, ReviewKind.ADDRESS, opened=NOW - timedelta(minutes=10))
    older = review_item(order, ReviewKind.SUBSTITUTION, opened=NOW - timedelta(hours=2))
    review_item(order, ReviewKind.ADDRESS, opened=BEFORE_PERIOD, status=ReviewStatus.ACCEPTED)

    html = viewer_client.get(kpi_url("queue_size")).content.decode()

    rows = rows_of(html, "Open review items")
    assert len(rows) == 2
    assert f'href="/queue/items/{older.pk}/"' in rows[0]
    assert "2 h" in rows[0]
    assert f'href="/queue/items/{newer.pk}/"' in rows[1]
    assert "10 min" in rows[1]


def test_queue_size_leaves_out_known_answer_items(viewer_client, shop):
    from reviews.models import KnownAnswer

    order = order_create(shop, "#9002")
    real = review_item(order, ReviewKind.ADDRESS, opened=NOW - timedelta(minutes=10))
    case = KnownAnswer.objects.create(
        kind=ReviewKind.ADDRESS, reason="test", source_data={}, expected="reject", explanation="x"
    )
    check = review_item(order, ReviewKind.ADDRESS, opened=NOW - timedelta(hours=1))
    ReviewItem.objects.filter(pk=check.pk).update(order=None, known_answer=case)

    rows = rows_of(viewer_client.get(kpi_url("queue_size")).content.decode(), "Open review items")

    assert len(rows) == 1
    assert f'href="/queue/items/{real.pk}/"' in rows[0]


def test_time_to_approve_lists_decided_items(viewer_client, shop):
    manager = make_user("morgan", "cs_manager")
    order = order_create(shop, "#9101")
    item = review_item(
        order,
        ReviewKind.ADDRESS,
        opened=IN_PERIOD - timedelta(minutes=45),
        status=ReviewStatus.ACCEPTED,
        decided_at=IN_PERIOD,
        decided_by=manager,
    )
    review_item(order, ReviewKind.ADDRESS, opened=IN_PERIOD, status=ReviewStatus.OPEN)

    html = viewer_client.get(kpi_url("time_to_approve_p50")).content.decode()

    (row,) = rows_of(html, "Review items")
    assert f'href="/queue/items/{item.pk}/"' in row
    assert "45 min" in row


def test_chargebacks_with_amount(viewer_client, shop):
    Chargeback.objects.create(
        order=order_create(shop, "#9201"),
        channel=shop,
        chargeback_id="cb-1",
        amount=Decimal("12.500"),
        currency="USD",
        reason="fraud",
        received_at=IN_PERIOD,
    )

    html = viewer_client.get(kpi_url("chargeback_rate")).content.decode()

    (row,) = rows_of(html, "Chargebacks")
    assert "12.50 USD" in row
    assert "cb-1" in row


def test_stock_discrepancies_listed_for_all_channels(viewer_client, shop):
    from catalog.models import Sku

    sku = Sku.objects.create(code="MUG-1", title="Mug", price="5", currency="USD")
    location = Location.objects.create(code="wh-1", name="Warehouse", kind=LocationKind.WAREHOUSE)
    discrepancy = InventoryDiscrepancy.objects.create(
        sku=sku,
        location=location,
        expected=10,
        counted=7,
        difference=-3,
        reported_by=make_user("stocker", None),
    )
    InventoryDiscrepancy.objects.filter(pk=discrepancy.pk).update(created_at=IN_PERIOD)

    html = viewer_client.get(kpi_url("inventory_discrepancy_rate", channel="shop")).content.decode()

    (row,) = rows_of(html, "Inventory discrepancies")
    assert "MUG-1" in row
    assert "wh-1" in row
    assert "-3" in row
    assert "so the list is not limited to shop" in html


# --- Customer data -----------------------------------------------------------------------


def every_kind_of_record(shop: Channel) -> None:
    order = order_create(shop, "#PII")
    event_at(order, "order.ready", IN_PERIOD)
    event_at(order, "order.cancelled", IN_PERIOD, delivery=order.delivery_id)
    shipment = Shipment.objects.create(
        order=order,
        channel=shop,
        shipment_id="s-1",
        carrier_code="ups",
        tracking_number="1Z999",
        shipped_at=IN_PERIOD,
        is_duplicate=True,
        address_corrected=True,
        status=ShipmentStatus.DELIVERY_FAILED,
        status_changed_at=IN_PERIOD,
    )
    FulfilmentException.objects.create(
        order=order,
        channel=shop,
        shipment=shipment,
        stage="ship",
        reason="wrong_address",
        note=f"{CUSTOMER_NAME}, {STREET}",
        occurred_at=IN_PERIOD,
    )
    OrderReturn.objects.create(
        order=order,
        channel=shop,
        return_id="r-1",
        reason=ReturnReason.WRONG_ITEM,
        attributed_to=ReturnAttribution.FULFILMENT,
        involves_substitution=True,
        note=f"{CUSTOMER_NAME} sent it back from {STREET}",
        received_at=IN_PERIOD,
    )
    Chargeback.objects.create(
        order=order,
        channel=shop,
        chargeback_id="cb-1",
        amount=Decimal("44.98"),
        currency="USD",
        received_at=IN_PERIOD,
    )
    decision_create(
        order,
        applied_at=IN_PERIOD - timedelta(hours=1),
        outcome=DecisionOutcome.ERROR,
        labelled_at=IN_PERIOD,
        reverted_at=IN_PERIOD,
        review_outcome=ReviewOutcome.DISAGREED,
        reviewed_at=IN_PERIOD,
        rationale=f"Customer {CUSTOMER_NAME} asked",
        label_note=f"Wrong house on {STREET}",
    )
    review_item(order, ReviewKind.ADDRESS, opened=IN_PERIOD)
    review_item(
        order,
        ReviewKind.ADDRESS,
        opened=IN_PERIOD,
        status=ReviewStatus.ACCEPTED,
        decided_at=IN_PERIOD + timedelta(minutes=5),
        decided_by=make_user("morgan", "cs_manager"),
        decision_note=f"Called {CUSTOMER_NAME}",
    )


@pytest.mark.parametrize("slug", sorted(KPIS))
def test_no_customer_data_on_any_drilldown(viewer_client, shop, slug):
    every_kind_of_record(shop)

    response = viewer_client.get(kpi_url(slug, days=90))

    assert response.status_code == 200
    html = response.content.decode()
    assert "#PII" in html or slug in ("inventory_discrepancy_rate",)
    for text in PII:
        assert text not in html, f"{text!r} on the {slug} drill-down"


# --- Value split -------------------------------------------------------------------------


def rollup(counter: str, day: date, count: int, *, channel: str = "shop", dimension: str = ""):
    KpiRollup.objects.create(
        counter=counter,
        granularity=Granularity.DAY,
        bucket_start=datetime(day.year, day.month, day.day, tzinfo=UTC),
        channel=channel,
        dimension=dimension,
        count=count,
    )


def test_split_by_channel_and_dimension(viewer_client):
    rollup("reviewed_decisions", date(2025, 3, 10), 100, dimension="substitute_sku")
    rollup("disagreements", date(2025, 3, 10), 4, dimension="substitute_sku")
    rollup("reviewed_decisions", date(2025, 3, 10), 50, dimension="correct_address")
    rollup("disagreements", date(2025, 3, 10), 1, dimension="correct_address")
    rollup(
        "reviewed_decisions", date(2025, 3, 10), 50, channel="market", dimension="substitute_sku"
    )
    rollup("reviewed_decisions", date(2025, 3, 10), 50, dimension="select_carrier")

    response = viewer_client.get(kpi_url("disagreement_rate"))

    breakdown = response.context["breakdown"]
    assert breakdown.card.current.value == Decimal("2")  # 5 of 250
    assert [(code, value.value) for code, value in breakdown.by_channel] == [
        ("market", Decimal("0")),
        ("shop", Decimal(5 * 100) / 200),
    ]
    # The carrier action had reviews but no disagreement: a row of 0 %, not a missing one.
    assert [(key, value.value, value.sample) for key, value in breakdown.by_dimension] == [
        ("correct_address", Decimal("2"), 50),
        ("select_carrier", Decimal("0"), 50),
        ("substitute_sku", Decimal("4") * 100 / 150, 150),
    ]
    html = response.content.decode()
    assert "By action" in html
    assert 'href="?dimension=correct_address"' in html


def test_channel_split_absent_for_all_channel_counters(viewer_client):
    response = viewer_client.get(kpi_url("inventory_discrepancy_rate"))

    assert response.context["breakdown"].by_channel is None
    assert "kept for all channels together, not per channel" in response.content.decode()


def test_carrier_mix_shares(viewer_client):
    rollup("shipments", date(2025, 3, 10), 30, dimension="ups")
    rollup("shipments", date(2025, 3, 10), 10, dimension="dhl")

    response = viewer_client.get(kpi_url("carrier_mix"))

    by_dimension = dict(response.context["breakdown"].by_dimension)
    assert by_dimension["ups"].value == Decimal("0.75")
    assert by_dimension["dhl"].sample == 10
    assert "75.0 %" in response.content.decode()


def test_definition_shown(viewer_client):
    html = viewer_client.get(kpi_url("order_error_rate")).content.decode()

    assert escape(KPIS["order_error_rate"].description) in html
    assert "order_errors ÷ orders_received × 10,000" in html
    assert "<code>orders_received</code>" in html
    assert escape(COUNTERS["order_errors"].source) in html


# --- Errors and access -------------------------------------------------------------------


def test_unknown_slug_404(viewer_client):
    response = viewer_client.get(kpi_url("no_such_kpi"))

    assert response.status_code == 404
    assert "There is no KPI &#x27;no_such_kpi&#x27;." in response.content.decode()


def test_bad_parameters_fall_back(viewer_client):
    long_dimension = "x" * 200
    response = viewer_client.get(
        kpi_url("disagreement_rate", days="1000", channel="gone", dimension=long_dimension)
    )

    assert response.status_code == 200
    assert response.context["days"] == 30
    assert response.context["channel"] is None
    assert response.context["dimension"] == ""


def test_dimension_ignored_for_kpi_without_one(viewer_client):
    response = viewer_client.get(kpi_url("chargeback_rate", dimension="ups"))

    assert response.context["dimension"] == ""


def test_agent_gets_403(client, agent):
    client.force_login(agent)

    assert client.get(kpi_url("order_error_rate")).status_code == 403


def test_anonymous_goes_to_login(client):
    response = client.get(kpi_url("order_error_rate"))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_query_count_flat(viewer_client, shop):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = viewer_client.get(kpi_url("fulfilment_exceptions"))
        assert response.status_code == 200
        return len(queries.captured_queries)

    def exceptions(number: int) -> None:
        for index in range(number):
            order = order_create(shop, f"#{number}-{index}")
            shipment = Shipment.objects.create(
                order=order, channel=shop, shipment_id=f"s-{index}", shipped_at=IN_PERIOD
            )
            FulfilmentException.objects.create(
                order=order,
                channel=shop,
                shipment=shipment,
                stage="pick",
                reason="wrong_item",
                occurred_at=IN_PERIOD,
            )

    exceptions(2)
    few = count()
    exceptions(20)

    assert count() == few


def test_unknown_dimension_gets_a_notice(viewer_client, shop):
    html = viewer_client.get(kpi_url("fulfilment_exceptions", dimension="nope")).content.decode()

    assert "No records with stage &#x27;nope&#x27; in this period." in html


def test_dimension_without_breakdown_gets_notice(viewer_client, shop):
    html = viewer_client.get(kpi_url("order_error_rate", dimension="x")).content.decode()

    assert "This KPI has no breakdown to filter by. Showing all records." in html
