"""Order history for auditors: the selector, the page, revert, exports, masking and roles."""

import csv
import io
import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db import connection
from django.db.models import ForeignKey
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from guardrails.defaults import default_policies_load
from guardrails.models import Decision, Verdict
from guardrails.services import decision_propose
from orders import selectors
from orders.history_export import CSV_COLUMNS
from orders.models import Order
from reviews.models import ReviewItem
from reviews.services import review_item_accept
from tests.conftest import as_body, ensure_role_groups, make_user, order_payload, signed_headers

pytestmark = pytest.mark.django_db

CORRECTED_ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Ln",
    "city": "Austin",
    "province_code": "TX",
    "zip": "78701",
    "country_code": "US",
}


@pytest.fixture
def policies(db) -> None:
    ensure_role_groups()
    default_policies_load()


@pytest.fixture
def cs_manager(db) -> User:
    return make_user("morgan", "cs_manager")


@pytest.fixture
def ops_manager(db) -> User:
    return make_user("olivia", "ops_manager")


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_order(post_webhook, number: int = 1) -> Order:
    body = as_body(order_payload(order_id=number, email=f"ada{number}@example.com"))
    post_webhook(body, signed_headers(body, webhook_id=f"wh-{number}"))
    return Order.objects.get(channel_order_id=str(number))


def propose(order: Order, action: str, before: dict, after: dict, confidence="0.95") -> Decision:
    return decision_propose(
        order_id=order.pk,
        action_code=action,
        before=before,
        after=after,
        confidence=confidence,
        model_name="gpt-route",
        model_version="7",
    )


def carrier_switch(order: Order) -> Decision:
    """An autonomous carrier choice, applied by the default policy."""
    return propose(
        order,
        "select_carrier",
        {"carrier_service": "ups/ground"},
        {"carrier_service": "fedex/ground"},
    )


def address_correction(order: Order) -> Decision:
    """An address correction, which the default policy queues for a CS manager."""
    return propose(
        order,
        "correct_shipping_address",
        {"shipping_address": order.shipping_address},
        {"shipping_address": CORRECTED_ADDRESS},
        confidence="0.97",
    )


# --- Selector ----------------------------------------------------------------------------------


def test_history_has_decision_context(channel, catalog, post_webhook, policies):
    order = post_order(post_webhook)
    decision = carrier_switch(order)
    assert decision.verdict == Verdict.APPLIED

    entries = selectors.order_history(order=order)

    proposed = next(e for e in entries if e.action == "decision.proposed")
    assert proposed.source == "audit"
    assert proposed.target == f"decision #{decision.pk}"
    assert proposed.actor == "ai:gpt-route/7"
    assert proposed.actor_kind == "ai"
    assert proposed.decision_id == decision.pk
    assert proposed.policy_version == str(decision.policy_version)
    assert proposed.policy_version.startswith("select_carrier (all channels) v")
    assert str(proposed.confidence) == "0.9500"
    assert proposed.facts == decision.facts
    assert proposed.revertible
    change = next(e for e in entries if e.action == "order.carrier_service_changed")
    assert (change.target, change.actor) == ("order", "ai:gpt-route/7")
    assert change.after == {"carrier_service": "FedEx Ground"}
    event = next(e for e in entries if e.source == "event" and e.action == "ai.applied")
    assert event.decision_id == decision.pk
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    assert {e.source for e in entries} == {"audit", "event"}


def test_history_names_reviewer_of_queued_decision(
    channel, catalog, post_webhook, policies, cs_manager
):
    order = post_order(post_webhook)
    decision = address_correction(order)
    assert decision.verdict == Verdict.QUEUED_FOR_REVIEW

    review_item_accept(item_id=decision.review_item_id, user=cs_manager)

    entries = selectors.order_history(order=order)
    applied = next(e for e in entries if e.action == "decision.applied")
    assert applied.actor == "morgan"
    assert applied.reviewed_by == "morgan"
    assert applied.review_item_id == decision.review_item_id
    accepted = next(e for e in entries if e.action == "review_item.accepted")
    assert accepted.target == f"review item #{decision.review_item_id}"
    assert accepted.decision_id == decision.pk


def test_history_includes_line_and_reservation_entries(channel, catalog, post_webhook, policies):
    from django.utils import timezone

    from inventory.models import Location, LocationKind, StockLevel

    warehouse = Location.objects.create(code="wh", name="Warehouse", kind=LocationKind.WAREHOUSE)
    for sku in catalog[:2]:
        StockLevel.objects.create(sku=sku, location=warehouse, on_hand=5, counted_at=timezone.now())
    order = post_order(post_webhook)
    decision = propose(
        order,
        "substitute_sku",
        {"line": 1, "sku": "TEE-CLASSIC-BLK-M"},
        {"line": 1, "sku": "TEE-CLASSIC-WHT-M"},
        confidence="0.99",
    )
    assert decision.verdict == Verdict.APPLIED

    entries = selectors.order_history(order=order)

    substituted = next(e for e in entries if e.action == "order_line.sku_substituted")
    assert substituted.target == "line 1"
    assert substituted.after == {"sku": "TEE-CLASSIC-WHT-M"}
    reservations = [e for e in entries if e.target.startswith("reservation #")]
    assert {e.action for e in reservations} >= {"reservation.created", "reservation.released"}


def test_history_leaves_out_other_orders(channel, catalog, post_webhook, policies):
    first = post_order(post_webhook, 1)
    second = post_order(post_webhook, 2)
    carrier_switch(second)

    entries = selectors.order_history(order=first)

    assert {entry.order_id for entry in entries} == {first.pk}
    assert not any(entry.decision_id for entry in entries)


def _history_queries(order: Order) -> int:
    with CaptureQueriesContext(connection) as queries:
        selectors.order_history(order=order)
    return len(queries)


def test_history_query_count_is_constant(channel, catalog, post_webhook, policies, cs_manager):
    small = post_order(post_webhook, 1)
    carrier_switch(small)
    large = post_order(post_webhook, 2)
    for _ in range(3):
        carrier_switch(large)
        propose(
            large,
            "select_carrier",
            {"carrier_service": "fedex/ground"},
            {"carrier_service": "ups/ground"},
        )
    decision = address_correction(large)
    review_item_accept(item_id=decision.review_item_id, user=cs_manager)
    assert len(selectors.order_history(order=large)) > 3 * len(selectors.order_history(order=small))

    assert _history_queries(small) == _history_queries(large) == 5


# --- Page and revert ---------------------------------------------------------------------------


def test_order_page_links_history(channel, catalog, post_webhook, agent):
    order = post_order(post_webhook)

    response = client_for(agent).get(reverse("orders:detail", args=[order.pk]))

    assert reverse("orders:history", args=[order.pk]) in response.content.decode()


def test_history_page_masks_for_agent(channel, catalog, post_webhook, policies, agent):
    order = post_order(post_webhook)
    address_correction(order)

    response = client_for(agent).get(reverse("orders:history", args=[order.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "correct_shipping_address (all channels) v" in page
    assert "Confidence 0.9700" in page
    assert "Facts the engine saw" in page
    assert "12 Birch Lane" not in page
    assert "ada1@example.com" not in page
    assert "masked" in page
    assert "Export CSV" not in page


def test_history_page_shows_pii_to_cs_manager(channel, catalog, post_webhook, policies, cs_manager):
    order = post_order(post_webhook)
    address_correction(order)

    page = client_for(cs_manager).get(reverse("orders:history", args=[order.pk])).content.decode()

    assert "12 Birch Lane" in page
    assert "Export CSV" in page


def test_history_page_needs_login_and_view_permission(channel, catalog, post_webhook, outsider):
    order = post_order(post_webhook)
    url = reverse("orders:history", args=[order.pk])

    assert Client().get(url).status_code == 302
    assert client_for(outsider).get(url).status_code == 403
    missing = reverse("orders:history", args=[order.pk + 100])
    assert client_for(make_user("amy", "cs_agent")).get(missing).status_code == 404


def test_revert_button_reverts_applied_decision(
    channel, catalog, post_webhook, policies, cs_manager
):
    order = post_order(post_webhook)
    decision = carrier_switch(order)
    client = client_for(cs_manager)
    url = reverse("orders:history", args=[order.pk])
    revert_url = reverse("orders:history-revert", args=[order.pk, decision.pk])
    assert revert_url in client.get(url).content.decode()

    response = client.post(revert_url, {"note": "wrong carrier"}, follow=True)

    assert response.redirect_chain == [(url, 302)]
    assert f"Decision #{decision.pk} reverted." in response.content.decode()
    decision.refresh_from_db()
    assert decision.reverted_by == cs_manager
    order.refresh_from_db()
    assert order.carrier_service.name == "UPS Ground"
    assert f"Reverted by {cs_manager.username}" in response.content.decode()


def test_revert_twice_shows_conflict_message(channel, catalog, post_webhook, policies, cs_manager):
    order = post_order(post_webhook)
    decision = carrier_switch(order)
    client = client_for(cs_manager)
    revert_url = reverse("orders:history-revert", args=[order.pk, decision.pk])
    client.post(revert_url)

    response = client.post(revert_url, follow=True)

    assert f"Decision #{decision.pk} was not reverted: Decision #{decision.pk} was already " in (
        response.content.decode()
    )


def test_revert_needs_permission_and_matching_order(
    channel, catalog, post_webhook, policies, agent
):
    order = post_order(post_webhook)
    other = post_order(post_webhook, 2)
    decision = carrier_switch(order)
    client = client_for(agent)

    assert (
        "Revert decision"
        not in client.get(reverse("orders:history", args=[order.pk])).content.decode()
    )
    forbidden = client.post(reverse("orders:history-revert", args=[order.pk, decision.pk]))
    wrong_order = client.post(reverse("orders:history-revert", args=[other.pk, decision.pk]))

    assert forbidden.status_code == 403
    assert wrong_order.status_code == 404
    assert Decision.objects.get(pk=decision.pk).reverted_at is None


# --- Exports -----------------------------------------------------------------------------------


def test_order_json_export_masks_without_pii_permission(
    channel, catalog, post_webhook, policies, ops_manager
):
    order = post_order(post_webhook)
    address_correction(order)

    response = client_for(ops_manager).get(reverse("orders:history-json", args=[order.pk]))

    assert response.status_code == 200
    body = response.json()
    assert body["order"] == order.pk
    proposed = next(e for e in body["entries"] if e["action"] == "decision.proposed")
    assert proposed["before"]["shipping_address"]["address1"] == "***"
    assert proposed["before"]["shipping_address"]["city"] == "Austin"
    assert proposed["confidence"] == "0.9700"
    assert "12 Birch" not in response.content.decode()
    assert "ada1@example.com" not in response.content.decode()


def test_order_json_export_full_for_cs_manager(
    channel, catalog, post_webhook, policies, cs_manager
):
    order = post_order(post_webhook)
    address_correction(order)

    response = client_for(cs_manager).get(reverse("orders:history-json", args=[order.pk]))

    proposed = next(e for e in response.json()["entries"] if e["action"] == "decision.proposed")
    assert proposed["before"]["shipping_address"]["address1"] == "12 Birch Lane"


def test_order_csv_export_has_header_and_rows(
    channel, catalog, post_webhook, policies, ops_manager
):
    order = post_order(post_webhook)
    decision = carrier_switch(order)

    response = client_for(ops_manager).get(reverse("orders:history-csv", args=[order.pk]))

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="order-{order.pk}-history.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(selectors.order_history(order=order))
    proposed = next(row for row in rows if row["action"] == "decision.proposed")
    assert proposed["decision_id"] == str(decision.pk)
    assert json.loads(proposed["after"]) == {"carrier_service": "fedex/ground"}
    assert proposed["policy_version"] == str(decision.policy_version)


def test_csv_cells_cannot_start_formulas(channel, catalog, post_webhook, ops_manager):
    from orders.services import order_event_add

    order = post_order(post_webhook)
    order_event_add(order=order, kind="note", message='=HYPERLINK("http://x")')

    response = client_for(ops_manager).get(reverse("orders:history-csv", args=[order.pk]))

    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert next(row for row in rows if row["action"] == "note")["summary"].startswith("'=")


def test_exports_need_export_permission(channel, catalog, post_webhook, agent):
    order = post_order(post_webhook)
    client = client_for(agent)

    assert client.get(reverse("orders:history-json", args=[order.pk])).status_code == 403
    assert client.get(reverse("orders:history-csv", args=[order.pk])).status_code == 403
    export = reverse("orders:history-export") + "?from=2024-11-01&to=2024-11-02"
    assert client.get(export).status_code == 403


def _range_rows(client: Client, first: str, last: str, export_format: str = "csv") -> list:
    url = reverse("orders:history-export")
    response = client.get(url, {"from": first, "to": last, "format": export_format})
    assert response.status_code == 200, response.content
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    if export_format == "json":
        return json.loads(text)["entries"]
    return list(csv.DictReader(io.StringIO(text)))


def test_range_export_streams_entries_in_range(
    channel, catalog, post_webhook, policies, ops_manager, monkeypatch
):
    # Two rows per chunk, so the export reads several chunks and merges both sources.
    monkeypatch.setattr(selectors, "HISTORY_EXPORT_CHUNK", 2)
    with time_machine.travel(datetime(2024, 11, 3, 12, tzinfo=UTC), tick=False):
        before_range = post_order(post_webhook, 1)
    with time_machine.travel(datetime(2024, 11, 4, 12, tzinfo=UTC), tick=True):
        inside = post_order(post_webhook, 2)
        decision = carrier_switch(inside)
    with time_machine.travel(datetime(2024, 11, 6, 0, 0, tzinfo=UTC), tick=False):
        carrier_switch(before_range)

    rows = _range_rows(client_for(ops_manager), "2024-11-04", "2024-11-05")

    assert {row["order_id"] for row in rows} == {str(inside.pk)}
    expected = selectors.order_history(order=inside)
    assert [(row["source"], row["action"]) for row in rows] == [
        (entry.source, entry.action) for entry in expected
    ]
    assert str(decision.pk) in {row["decision_id"] for row in rows}
    assert "ada2@example.com" not in json.dumps(rows)


def test_range_export_json_for_one_day(channel, catalog, post_webhook, policies, cs_manager):
    with time_machine.travel(datetime(2024, 11, 4, 23, 59, tzinfo=UTC), tick=False):
        order = post_order(post_webhook, 1)

    entries = _range_rows(client_for(cs_manager), "2024-11-04", "2024-11-04", "json")

    assert entries
    assert {entry["order_id"] for entry in entries} == {order.pk}


def test_range_export_allows_31_days(ops_manager):
    assert _range_rows(client_for(ops_manager), "2024-01-01", "2024-01-31") == []


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({}, {"from": ["Required, as YYYY-MM-DD."], "to": ["Required, as YYYY-MM-DD."]}),
        (
            {"from": "2024-11-31", "to": "2024-12-01"},
            {"from": ["'2024-11-31' is not a valid date; use YYYY-MM-DD."]},
        ),
        (
            {"from": "2024-11-05", "to": "2024-11-04"},
            {"to": ["Must be on or after from (2024-11-05)."]},
        ),
        (
            {"from": "2024-01-01", "to": "2024-02-01"},
            {
                "to": [
                    "The range covers 32 days; at most 31 days per request, so export it in parts."
                ]
            },
        ),
        (
            {"from": "2024-01-01", "to": "2024-01-02", "format": "xlsx"},
            {"format": ["'xlsx' is not a supported format; use csv or json."]},
        ),
    ],
)
def test_range_export_rejects_bad_parameters(ops_manager, params, errors):
    response = client_for(ops_manager).get(reverse("orders:history-export"), params)

    assert response.status_code == 400
    assert response.json() == errors


# --- Roles and admin ---------------------------------------------------------------------------


def test_roles_get_history_permissions(db):
    ensure_role_groups()
    granted = {
        group.name: set(group.permissions.values_list("codename", flat=True))
        for group in Group.objects.all()
    }

    assert {"export_history", "view_customer_pii"} <= granted["cs_manager"]
    assert "export_history" in granted["ops_manager"]
    assert "view_customer_pii" not in granted["ops_manager"]
    assert not {"export_history", "view_customer_pii"} & granted["cs_agent"]


LARGE_TABLES = [
    "orders.Order",
    "orders.Delivery",
    "reviews.ReviewItem",
    "guardrails.Decision",
    "guardrails.AuditEntry",
    "inventory.StockEvent",
    "inventory.Reservation",
]
# Small lookup tables a select box can list.
SMALL_TABLES = {"catalog.channel", "inventory.location", "guardrails.actiontype", "auth.group"}


@pytest.mark.parametrize("label", LARGE_TABLES)
def test_large_table_admin_avoids_select_boxes(label):
    from django.apps import apps

    model = apps.get_model(label)
    model_admin = admin.site._registry[model]
    widgets = set(model_admin.raw_id_fields) | set(model_admin.autocomplete_fields)

    for field in model._meta.fields:
        if not isinstance(field, ForeignKey):
            continue
        if field.related_model._meta.label_lower in SMALL_TABLES:
            continue
        assert field.name in widgets, f"{label}.{field.name} renders a select of every row"
    assert model_admin.list_select_related


def test_order_admin_inlines_use_raw_ids():
    model_admin = admin.site._registry[Order]

    for inline in model_admin.inlines:
        foreign_keys = [f.name for f in inline.model._meta.fields if isinstance(f, ForeignKey)]
        assert set(foreign_keys) - {"order"} <= set(inline.raw_id_fields)


def test_review_item_admin_list_runs(channel, catalog, post_webhook, settings):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"
    post_order(post_webhook)
    superuser = User.objects.create_superuser(username="root", password="pw")
    client = client_for(superuser)

    for name in ("reviews_reviewitem", "guardrails_decision", "guardrails_auditentry"):
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200
    item = ReviewItem.objects.get()
    assert client.get(reverse("admin:reviews_reviewitem_change", args=[item.pk])).status_code == 200
