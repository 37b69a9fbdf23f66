"""Connector smoke tests: per channel, an order round-trip, a duplicate delivery and a stock delta.

Each check goes through the real HTTP entry point (routing, signature or token check, view,
service, pipeline) with Django's test client. All checks of one channel run inside one
transaction that is rolled back at the end, so nothing they write stays in the database:
orders, deliveries, stock events, audit entries, review items, order events.

Side effects outside the database: OMS Guard queues Celery tasks, emails and notifications
only with `transaction.on_commit`, and Django drops on_commit callbacks when the transaction
or savepoint that registered them rolls back, so none of them ever runs. The delivery's
processing task is one of those callbacks, so the checks call the pipeline
(`orders.pipeline.delivery_process`) themselves, inside the transaction. A worker could not do
it anyway, because it only reads committed rows. The checks therefore need no worker, with or
without REDIS_URL, and leave no task in the queue. A task sent any other way during a check
is reported by Celery's signals and fails that check.

Run the checks from their own process (`manage.py smoke_connectors`), never inside a web
worker: see `_square_fetch_replaced`.
"""

import base64
import copy
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from celery.signals import before_task_publish, task_prerun
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Permission
from django.db import transaction
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from catalog.models import Channel, ChannelKind, ChannelSkuMapping, ExternalIdKind, Sku
from guardrails.models import AuditEntry
from inventory.models import Location, LocationKind, StockEvent, StockEventOutcome, StockLevel
from omsguard.money import minor_units, money_format, money_round

from . import channel_webhooks
from .models import Delivery, DeliveryOutcome, Order
from .pipeline import delivery_process
from .square_client import SquareFetchError

logger = logging.getLogger(__name__)

CHECK_ROUND_TRIP = "order round-trip"
CHECK_DUPLICATE = "duplicate delivery"
CHECK_STOCK = "stock delta"
SMOKE_WORKER = "connector smoke test"
SMOKE_QUANTITY = 2
SMOKE_STOCK_DELTA = 3
# The permissions of the throwaway API user; it exists only inside the rolled-back transaction.
SMOKE_USER_PERMISSIONS = (
    ("orders", "add_order"),
    ("orders", "ingest_any_channel"),
    ("inventory", "add_stockevent"),
)
DETAIL_MAX_LENGTH = 160


@dataclass(frozen=True)
class SmokeResult:
    """One row of the smoke test report: one check of one channel."""

    channel: str
    check: str
    passed: bool
    detail: str
    duration_ms: int

    @property
    def result(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "check": self.check,
            "result": self.result,
            "detail": self.detail,
            "duration_ms": self.duration_ms,
        }


class SmokeChannelError(Exception):
    """The channel named for a smoke run does not exist or is not active."""


def smoke_channels_list(*, code: str | None = None) -> list[Channel]:
    """Return the channels to test: every active channel, or only the one with `code`.

    Raises SmokeChannelError for an unknown code, or a channel that is not active (its
    webhooks respond with 404, so there is nothing to test).
    """
    if code is None:
        return list(Channel.objects.filter(is_active=True).order_by("code"))

    channel = Channel.objects.filter(code=code).first()
    if channel is None:
        raise SmokeChannelError(f"Channel {code!r} not found. List channels in the admin.")
    if not channel.is_active:
        raise SmokeChannelError(
            f"Channel {code!r} is not active, so its webhooks respond with 404. Activate it first."
        )
    return [channel]


def connector_smoke_run(*, channel: Channel) -> list[SmokeResult]:
    """Run the round-trip, duplicate and stock checks for one channel, then roll them back.

    Returns one result per check. A check that raises counts as failed, so only an error in
    opening or rolling back the transaction raises out of here.
    """
    with _celery_tasks_watched() as tasks, transaction.atomic():
        run = _Run(channel=channel, tasks=tasks)
        try:
            _run_prepare(run)
        except Exception as error:
            logger.exception("connector smoke setup failed", extra={"channel": channel.code})
            setup_failure = f"setup failed: {_error_text(error)}"
            results = [
                SmokeResult(channel.code, check, False, setup_failure, 0)
                for check in (CHECK_ROUND_TRIP, CHECK_DUPLICATE, CHECK_STOCK)
            ]
        else:
            results = [
                _check_run(run, CHECK_ROUND_TRIP, _check_round_trip),
                _check_run(run, CHECK_DUPLICATE, _check_duplicate),
                _check_run(run, CHECK_STOCK, _check_stock_delta),
            ]
        # Everything the checks wrote goes, and with it every on_commit callback they queued.
        transaction.set_rollback(True)
    return results


# --- One run: its state, and the HTTP requests a channel sends ---------------------------------


@dataclass(frozen=True)
class _Request:
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class _ParsedResponse:
    """An entry point's response: the delivery it names and whether it counts as new."""

    status: int
    body: Any
    delivery: int | None = None
    # True "accepted", False "duplicate", None when the response does not say (canonical API).
    new: bool | None = None
    problem: str = ""


@dataclass(frozen=True)
class _SmokeOrder:
    """The run's synthetic order: ids unique to the run and one line of a mapped SKU."""

    number: int
    channel_order_id: str
    sku: Sku
    # The identifier the line carries; id_kind is "" for a canonical line naming the SKU code.
    id_kind: str
    external_id: str
    placed_at: datetime

    @property
    def currency(self) -> str:
        return self.sku.currency

    @property
    def unit_price(self) -> Decimal:
        return money_round(self.sku.price, self.currency)

    @property
    def total(self) -> Decimal:
        return self.unit_price * SMOKE_QUANTITY

    def amount(self, value: Decimal | int) -> str:
        return money_format(Decimal(value), self.currency)


@dataclass
class _Run:
    channel: Channel
    tasks: list[str]
    client: Client | None = None
    token: str = ""
    number: int = 0
    order: _SmokeOrder | None = None
    order_problem: str = ""
    first: _ParsedResponse | None = None
    deliveries_before: int = 0


def _run_prepare(run: _Run) -> None:
    """Create the throwaway API user and pick the run's ids and its mapped SKU."""
    # Random, so a run never meets an order of an earlier run or of a live channel.
    run.number = 900_000_000_000_000 + secrets.randbelow(10**14)
    run.client = Client(
        enforce_csrf_checks=True, raise_request_exception=True, headers={"Host": _request_host()}
    )
    run.token = Token.objects.create(user=_smoke_user_create(run.number)).key
    run.deliveries_before = (
        Delivery.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    )

    connector = CONNECTORS.get(run.channel.kind)
    if connector is None:
        run.order_problem = f"no smoke test for channel kind {run.channel.kind!r}"
        return
    mapping = _mapping_pick(run.channel, connector.id_kinds)
    if mapping is None:
        run.order_problem = _no_mapping_problem(run.channel, connector.id_kinds)
        return
    run.order = _SmokeOrder(
        number=run.number,
        channel_order_id=connector.order_id(run.number),
        sku=mapping[0],
        id_kind=mapping[1],
        external_id=mapping[2],
        placed_at=timezone.now().replace(microsecond=0),
    )


def _smoke_user_create(number: int) -> AbstractBaseUser:
    user = get_user_model().objects.create_user(username=f"smoke-{number}", password=None)
    for app_label, codename in SMOKE_USER_PERMISSIONS:
        permission = Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).first()
        if permission is None:
            raise RuntimeError(f"Permission {app_label}.{codename} is missing; run migrate.")
        user.user_permissions.add(permission)
    return user


def _request_host() -> str:
    """Return a host name that ALLOWED_HOSTS accepts, so no request fails as DisallowedHost."""
    for host in settings.ALLOWED_HOSTS:
        if host != "*":
            # ".example.com" allows example.com and all its subdomains.
            return host.lstrip(".")
    return "localhost"


def _mapping_pick(channel: Channel, id_kinds: tuple[str, ...]) -> tuple[Sku, str, str] | None:
    """Return (SKU, id kind, external id) of the channel's first usable mapping, or None.

    A canonical channel without mappings names a catalog SKU code directly, as its lines may.
    """
    mapping = (
        ChannelSkuMapping.objects.filter(channel=channel, id_kind__in=id_kinds, sku__is_active=True)
        .select_related("sku")
        .order_by("pk")
        .first()
    )
    if mapping is not None:
        return mapping.sku, mapping.id_kind, mapping.external_id
    if channel.kind == ChannelKind.CANONICAL:
        sku = Sku.objects.filter(is_active=True).order_by("code").first()
        if sku is not None:
            return sku, "", sku.code
    return None


def _no_mapping_problem(channel: Channel, id_kinds: tuple[str, ...]) -> str:
    if channel.kind == ChannelKind.CANONICAL:
        return "the catalog has no active SKU"
    kinds = " or ".join(id_kinds)
    return f"the channel maps no active SKU by {kinds}; add a mapping"


def _send(run: _Run, *, attempt: int) -> _ParsedResponse:
    """Send the run's order as the channel would, for the first or a repeated time."""
    connector = CONNECTORS[run.channel.kind]
    request = connector.request(run, attempt)
    square = run.channel.kind == ChannelKind.SQUARE
    with _square_fetch_replaced(run) if square else nullcontext():
        response = run.client.post(
            request.path,
            data=request.body,
            content_type="application/json",
            secure=True,
            headers=request.headers,
        )
    return connector.parse(response)


@contextmanager
def _square_fetch_replaced(run: _Run) -> Iterator[None]:
    """Answer the Square webhook's Orders API fetch with the smoke order, for the block.

    The smoke order exists only in this transaction, so Square could not return it, and a
    smoke run must not call Square at all. The rest of the webhook runs unchanged.
    NOTE: this replaces a module attribute, which is shared by every thread of the process. That is
    why smoke runs belong in their own process and never in a web worker.
    """
    order = _square_order(run.order)

    def fetch(*, order_id: str) -> dict:
        if order_id != order["id"]:
            raise SquareFetchError(f"the smoke run returns only order {order['id']}")
        return copy.deepcopy(order)

    original = channel_webhooks.square_order_fetch
    channel_webhooks.square_order_fetch = fetch
    try:
        yield
    finally:
        channel_webhooks.square_order_fetch = original


@contextmanager
def _celery_tasks_watched() -> Iterator[list[str]]:
    """Collect the names of Celery tasks sent or run in this process during the block."""
    names: list[str] = []

    def on_publish(sender: str | None = None, **kwargs: Any) -> None:
        names.append(str(sender))

    def on_prerun(sender: Any = None, **kwargs: Any) -> None:
        names.append(getattr(sender, "name", str(sender)))

    before_task_publish.connect(on_publish, weak=False)
    task_prerun.connect(on_prerun, weak=False)
    try:
        yield names
    finally:
        before_task_publish.disconnect(on_publish)
        task_prerun.disconnect(on_prerun)


# --- The three checks ----------------------------------------------------------------------


def _check_run(run: _Run, name: str, check: Callable[[_Run], tuple[bool, str]]) -> SmokeResult:
    """Run one check in its own savepoint and time it; an exception is a failed check."""
    started = time.perf_counter()
    tasks_before = len(run.tasks)
    try:
        # A savepoint, so a database error in one check cannot break the next one.
        with transaction.atomic():
            passed, detail = check(run)
    except Exception as error:
        logger.exception(
            "connector smoke check crashed", extra={"channel": run.channel.code, "check": name}
        )
        passed, detail = False, f"crashed: {_error_text(error)}"
    sent = run.tasks[tasks_before:]
    if sent:
        # Such a task escapes the rollback: a worker would run it against rows that are gone.
        passed = False
        detail = f"sent Celery task {sent[0]} outside on_commit; {detail}"

    result = SmokeResult(
        channel=run.channel.code,
        check=name,
        passed=passed,
        detail=detail[:DETAIL_MAX_LENGTH],
        duration_ms=round((time.perf_counter() - started) * 1000),
    )
    log = logger.info if passed else logger.warning
    log(
        "connector smoke check finished",
        extra={
            "channel": result.channel,
            "check": name,
            "result": result.result,
            "duration_ms": result.duration_ms,
        },
    )
    return result


def _check_round_trip(run: _Run) -> tuple[bool, str]:
    """Send the order signed as the channel would, process it, and read the order back."""
    problem = run.order_problem or _sending_problem(run.channel)
    if problem:
        return False, problem

    parsed = _send(run, attempt=1)
    run.first = parsed
    if parsed.problem:
        return False, parsed.problem
    if parsed.new is False:
        return False, "the first delivery was recognised as a duplicate"

    delivery = delivery_process(delivery_id=parsed.delivery, worker=SMOKE_WORKER)
    if delivery.outcome != DeliveryOutcome.PROCESSED:
        return False, f"pipeline outcome {delivery.outcome}: {delivery.error}"
    order = _order_read(run)
    if order is None:
        return False, "the delivery was processed but no order exists for it"
    problem = _order_problem(order, run.order)
    if problem:
        return False, problem
    expected = run.order
    return True, (
        f"1 line, {SMOKE_QUANTITY} x {expected.sku.code}, "
        f"total {expected.currency} {expected.amount(expected.total)}"
    )


def _sending_problem(channel: Channel) -> str:
    """Say why the channel's webhook cannot accept a signed request, or return ""."""
    if not CONNECTORS[channel.kind].signed:
        return ""
    if not channel.webhook_secret:
        return "the channel has no webhook secret; set it with add_channel --secret"
    if channel.kind == ChannelKind.SQUARE and not channel.notification_url:
        return "the Square channel has no notification URL, which Square signs"
    return ""


def _order_read(run: _Run) -> Order | None:
    return (
        Order.objects.filter(channel=run.channel, channel_order_id=run.order.channel_order_id)
        .prefetch_related("lines")
        .first()
    )


def _order_problem(order: Order, expected: _SmokeOrder) -> str:
    """Compare the stored order with what was sent; describe the first difference, or ""."""
    lines = list(order.lines.all())
    if len(lines) != 1:
        return f"the order has {len(lines)} lines, 1 was sent"
    line = lines[0]
    if line.sku_id != expected.sku.pk:
        found = "no SKU" if line.sku_id is None else f"SKU #{line.sku_id}"
        return f"the line was mapped to {found}, expected {expected.sku.code}"
    if line.quantity != SMOKE_QUANTITY:
        return f"line quantity {line.quantity}, {SMOKE_QUANTITY} was sent"
    if line.unit_price != expected.unit_price:
        return f"unit price {line.unit_price}, {expected.amount(expected.unit_price)} was sent"
    if order.currency != expected.currency:
        return f"currency {order.currency}, {expected.currency} was sent"
    if order.total != expected.total:
        return f"total {order.total}, {expected.amount(expected.total)} was sent"
    return ""


def _check_duplicate(run: _Run) -> tuple[bool, str]:
    """Send the same delivery again: the response must be the idempotent one, nothing changes."""
    if run.first is None or run.first.problem or run.first.delivery is None:
        return False, "not run: the round-trip recorded no delivery to repeat"
    order = _order_read(run)
    before = _order_state(order) if order is not None else None

    parsed = _send(run, attempt=2)
    if parsed.problem:
        return False, parsed.problem
    if parsed.delivery is not None and parsed.delivery != run.first.delivery:
        # A worker would process the new delivery; do the same, so its effect shows below.
        delivery_process(delivery_id=parsed.delivery, worker=SMOKE_WORKER)

    problems = []
    if not _is_idempotent_response(run.first, parsed):
        problems.append("the repeat was accepted as a new delivery")
    deliveries = Delivery.objects.filter(
        channel=run.channel, pk__gt=run.deliveries_before, delivery_id__contains=str(run.number)
    ).count()
    if deliveries != 1:
        problems.append(f"{deliveries} deliveries recorded for one")
    orders = Order.objects.filter(
        channel=run.channel, channel_order_id=run.order.channel_order_id
    ).count()
    if orders != 1:
        problems.append(f"{orders} orders for one")
    order = _order_read(run)
    if order is not None and before is not None and _order_state(order) != before:
        problems.append("the order changed")
    if problems:
        return False, "; ".join(problems)
    return True, "recognised as a duplicate; 1 delivery, 1 order, order unchanged"


def _order_state(order: Order) -> tuple:
    lines = tuple((line.position, line.quantity, line.sku_id) for line in order.lines.all())
    return order.version, order.total, lines


def _is_idempotent_response(first: _ParsedResponse, second: _ParsedResponse) -> bool:
    if second.delivery != first.delivery:
        return False
    if second.new is None:
        # The canonical API marks no duplicate; it returns the first response again.
        return (second.status, second.body) == (first.status, first.body)
    return second.new is False


def _check_stock_delta(run: _Run) -> tuple[bool, str]:
    """Post a stock delta, its replay, and the same change under a new event id.

    Only the first may move stock. The location is created for the run and inactive, so no
    live stock level is locked or changed and no reservation can use it.
    """
    if run.order is None:
        return False, f"not run: {run.order_problem}"
    sku = run.order.sku
    location = Location.objects.create(
        code=f"smoke-{run.number}",
        name="Connector smoke test (rolled back)",
        kind=LocationKind.WAREHOUSE,
        is_active=False,
    )
    event = {
        "source": f"smoke-{run.channel.code}"[:64],
        "event_id": f"smoke-{run.number}-1",
        "sku": sku.code,
        "location": location.code,
        "kind": "delta",
        "quantity": SMOKE_STOCK_DELTA,
        "version": 1,
        "occurred_at": run.order.placed_at.isoformat(),
    }

    first = _stock_event_post(run, event)
    replay = _stock_event_post(run, event)
    rekeyed = _stock_event_post(run, {**event, "event_id": f"smoke-{run.number}-2"})

    problems = [
        *_stock_response_problems("first event", first, status=201, outcome="applied"),
        *_stock_response_problems("replay", replay, status=200, outcome="duplicate"),
        *_stock_response_problems("same version, new id", rekeyed, status=201, outcome="stale"),
    ]
    if first[1].get("id") is not None and replay[1].get("id") != first[1].get("id"):
        problems.append("the replay names another event")
    level = StockLevel.objects.filter(sku=sku, location=location).first()
    on_hand = level.on_hand if level is not None else 0
    if on_hand != SMOKE_STOCK_DELTA:
        problems.append(f"stock moved from 0 to {on_hand}, expected {SMOKE_STOCK_DELTA}")
    applied = StockEvent.objects.filter(
        sku=sku, location=location, outcome=StockEventOutcome.APPLIED
    ).count()
    audited = (
        AuditEntry.objects.filter(
            action="stock.event_applied", target_type="stock_level", target_id=str(level.pk)
        ).count()
        if level is not None
        else 0
    )
    if applied != 1 or audited != 1:
        problems.append(f"{applied} events applied and {audited} audited, expected 1")
    if problems:
        return False, "; ".join(problems)
    return True, f"on hand 0 -> {on_hand}, applied once; replay duplicate, same version stale"


def _stock_event_post(run: _Run, event: dict) -> tuple[int, dict]:
    response = run.client.post(
        reverse("stock-event-list"),
        data=json.dumps(event).encode("utf-8"),
        content_type="application/json",
        secure=True,
        headers={"Authorization": f"Token {run.token}"},
    )
    body = _json_body(response)
    return response.status_code, body if isinstance(body, dict) else {}


def _stock_response_problems(
    label: str, parsed: tuple[int, dict], *, status: int, outcome: str
) -> list[str]:
    code, body = parsed
    if code == status and body.get("outcome") == outcome:
        return []
    got = body.get("outcome") or _error_code(body)
    received = f"HTTP {code} {got}" if got else f"HTTP {code}"
    return [f"{label}: {received}, expected {status} {outcome}"]


# --- What each channel kind sends, and how its entry point responds ---------------------------


@dataclass(frozen=True)
class _Connector:
    # Mapping kinds the channel's adapter looks lines up by.
    id_kinds: tuple[str, ...]
    order_id: Callable[[int], str]
    request: Callable[[_Run, int], _Request]
    parse: Callable[[HttpResponse], _ParsedResponse]
    # The entry point checks an HMAC signature made with the channel's webhook secret.
    signed: bool


def _hmac_base64(message: bytes, key: str) -> str:
    """Sign as Shopify, WooCommerce and Square document it: base64 of HMAC-SHA256.

    Computed here rather than with the adapters' own helpers, so a change to the code that
    verifies signatures cannot pass the smoke test by changing the signing side with it.
    """
    digest = hmac.new(key.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shopify_request(run: _Run, attempt: int) -> _Request:
    order = run.order
    line: dict[str, Any] = {
        "id": order.number + 1,
        "variant_id": None,
        "sku": "",
        "title": order.sku.title,
        "name": order.sku.title,
        "quantity": SMOKE_QUANTITY,
        "price": order.amount(order.unit_price),
    }
    if order.id_kind == ExternalIdKind.SHOPIFY_VARIANT:
        # Shopify sends variant ids as JSON numbers.
        variant = order.external_id
        line["variant_id"] = int(variant) if variant.isdigit() else variant
    else:
        line["sku"] = order.external_id
    payload = {
        "id": order.number,
        "name": f"#SMOKE-{order.number}",
        "currency": order.currency,
        "presentment_currency": order.currency,
        "created_at": order.placed_at.isoformat(),
        "updated_at": order.placed_at.isoformat(),
        "subtotal_price": order.amount(order.total),
        "total_tax": order.amount(0),
        "total_discounts": order.amount(0),
        "total_price": order.amount(order.total),
        "total_shipping_price_set": {
            "shop_money": {"amount": order.amount(0), "currency_code": order.currency}
        },
        "source_name": "smoke-test",
        "tags": "smoke-test",
        "shipping_address": None,
        "billing_address": None,
        "shipping_lines": [],
        "line_items": [line],
    }
    body = _json_bytes(payload)
    # A Shopify retry repeats the webhook id, event id and body of the first attempt.
    webhook_id = f"smoke-{order.number}"
    return _Request(
        path=reverse("webhooks:shopify", kwargs={"channel_code": run.channel.code}),
        body=body,
        headers={
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Hmac-Sha256": _hmac_base64(body, run.channel.webhook_secret),
            "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Event-Id": f"ev-{webhook_id}",
            "X-Shopify-Triggered-At": order.placed_at.isoformat(),
        },
    )


def _woocommerce_request(run: _Run, attempt: int) -> _Request:
    order = run.order
    line_total = order.amount(order.total)
    payload = {
        "id": order.number,
        "number": f"SMOKE-{order.number}",
        "status": "processing",
        "currency": order.currency,
        "created_via": "smoke-test",
        "date_created_gmt": _utc_text(order.placed_at).rstrip("Z"),
        "date_modified_gmt": _utc_text(order.placed_at).rstrip("Z"),
        "discount_total": order.amount(0),
        "shipping_total": order.amount(0),
        "total_tax": order.amount(0),
        "total": order.amount(order.total),
        "customer_id": 0,
        "billing": {},
        "shipping": {},
        "shipping_lines": [],
        "line_items": [
            {
                "id": order.number + 1,
                "name": order.sku.title,
                "sku": order.external_id,
                "variation_id": 0,
                "quantity": SMOKE_QUANTITY,
                "subtotal": line_total,
                "total": line_total,
            }
        ],
    }
    body = _json_bytes(payload)
    return _Request(
        path=reverse("webhooks:woocommerce", kwargs={"channel_code": run.channel.code}),
        body=body,
        headers={
            "X-WC-Webhook-Topic": "order.created",
            "X-WC-Webhook-Resource": "order",
            "X-WC-Webhook-Event": "created",
            "X-WC-Webhook-Signature": _hmac_base64(body, run.channel.webhook_secret),
            # WooCommerce makes a new delivery id for every attempt; repeats are recognised
            # by the order id and date_modified_gmt.
            "X-WC-Webhook-Delivery-ID": secrets.token_hex(16),
        },
    )


def _square_order(order: _SmokeOrder) -> dict:
    """The order as Square's Orders API returns it: integer amounts in minor units."""
    scale = 10 ** minor_units(order.currency)

    def money(amount: Decimal) -> dict:
        return {"amount": int(amount * scale), "currency": order.currency}

    return {
        "id": f"SMOKE{order.number}",
        "location_id": "SMOKETEST",
        "reference_id": f"SMOKE-{order.number}",
        "source": {"name": "smoke-test"},
        "state": "OPEN",
        "version": 1,
        "created_at": order.placed_at.isoformat(),
        "updated_at": order.placed_at.isoformat(),
        "line_items": [
            {
                "uid": f"smoke-line-{order.number}",
                "catalog_object_id": order.external_id,
                "quantity": str(SMOKE_QUANTITY),
                "name": order.sku.title,
                "base_price_money": money(order.unit_price),
                "total_money": money(order.total),
            }
        ],
        "total_money": money(order.total),
        "total_tax_money": money(Decimal(0)),
        "total_discount_money": money(Decimal(0)),
        "total_service_charge_money": money(Decimal(0)),
    }


def _square_request(run: _Run, attempt: int) -> _Request:
    order = run.order
    event = {
        "merchant_id": "SMOKETEST",
        "type": "order.created",
        # A Square retry repeats the event id and body.
        "event_id": f"smoke-{order.number}",
        "created_at": order.placed_at.isoformat(),
        "data": {
            "type": "order",
            "id": f"SMOKE{order.number}",
            "object": {"order_created": {"state": "OPEN", "version": 1}},
        },
    }
    body = _json_bytes(event)
    channel = run.channel
    return _Request(
        path=reverse("webhooks:square", kwargs={"channel_code": channel.code}),
        body=body,
        headers={
            # Square signs the notification URL followed by the body.
            "X-Square-HmacSha256-Signature": _hmac_base64(
                channel.notification_url.encode("utf-8") + body, channel.webhook_secret
            ),
            "Square-Retry-Number": str(attempt - 1),
        },
    )


def _amazon_request(run: _Run, attempt: int) -> _Request:
    order = run.order
    item: dict[str, Any] = {
        "ASIN": "",
        "SellerSKU": "",
        "OrderItemId": str(order.number + 1),
        "Title": order.sku.title,
        "QuantityOrdered": SMOKE_QUANTITY,
        "ItemPrice": {"CurrencyCode": order.currency, "Amount": order.amount(order.total)},
    }
    item["ASIN" if order.id_kind == ExternalIdKind.AMAZON_ASIN else "SellerSKU"] = order.external_id
    entry = {
        "order": {
            "AmazonOrderId": order.channel_order_id,
            "PurchaseDate": _utc_text(order.placed_at),
            "LastUpdateDate": _utc_text(order.placed_at),
            "OrderStatus": "Unshipped",
            "FulfillmentChannel": "MFN",
            "OrderTotal": {"CurrencyCode": order.currency, "Amount": order.amount(order.total)},
        },
        "items": [item],
    }
    return _marketplace_request(run, entry)


def _ebay_request(run: _Run, attempt: int) -> _Request:
    order = run.order
    is_legacy = order.id_kind == ExternalIdKind.EBAY_LEGACY_ITEM
    payload = {
        "orderId": order.channel_order_id,
        "creationDate": _utc_text(order.placed_at),
        "lastModifiedDate": _utc_text(order.placed_at),
        "orderFulfillmentStatus": "NOT_STARTED",
        "orderPaymentStatus": "PAID",
        "pricingSummary": {
            "priceSubtotal": {"value": order.amount(order.total), "currency": order.currency},
            "total": {"value": order.amount(order.total), "currency": order.currency},
        },
        "lineItems": [
            {
                "lineItemId": str(order.number + 1),
                "legacyItemId": order.external_id if is_legacy else "",
                "sku": "" if is_legacy else order.external_id,
                "title": order.sku.title,
                "quantity": SMOKE_QUANTITY,
                "lineItemCost": {"value": order.amount(order.total), "currency": order.currency},
            }
        ],
    }
    return _marketplace_request(run, payload)


def _marketplace_request(run: _Run, payload: dict) -> _Request:
    # Amazon and eBay orders come from a poller through the token-authenticated API; they
    # carry no webhook signature.
    return _Request(
        path=reverse("marketplace-orders", kwargs={"channel_code": run.channel.code}),
        body=_json_bytes(payload),
        headers={"Authorization": f"Token {run.token}"},
    )


def _canonical_request(run: _Run, attempt: int) -> _Request:
    order = run.order
    line: dict[str, Any] = {
        "title": order.sku.title,
        "quantity": SMOKE_QUANTITY,
        "unit_price": order.amount(order.unit_price),
    }
    if order.id_kind:
        line["external"] = {"id_kind": order.id_kind, "id": order.external_id}
    else:
        line["sku"] = order.external_id
    payload = {
        "channel": run.channel.code,
        "channel_order_id": order.channel_order_id,
        "order_number": order.channel_order_id,
        "currency": order.currency,
        "placed_at": order.placed_at.isoformat(),
        "customer": {"name": "", "email": ""},
        "shipping_address": None,
        "billing_address": None,
        "shipping": {"carrier_code": "", "method": "", "amount": order.amount(0)},
        "lines": [line],
        "subtotal": order.amount(order.total),
        "shipping_total": order.amount(0),
        "tax_total": order.amount(0),
        "discount_total": order.amount(0),
        "total": order.amount(order.total),
        "tags": ["smoke-test"],
    }
    return _Request(
        path=reverse("order-list"),
        body=_json_bytes(payload),
        headers={
            "Authorization": f"Token {run.token}",
            "Idempotency-Key": f"smoke-{order.number}",
        },
    )


def _webhook_response_parse(response: HttpResponse) -> _ParsedResponse:
    body = _json_body(response)
    status = body.get("status") if isinstance(body, dict) else None
    if response.status_code != 200 or status not in ("accepted", "duplicate"):
        return _ParsedResponse(response.status_code, body, problem=_http_problem(response, body))
    return _ParsedResponse(
        response.status_code, body, delivery=body.get("delivery"), new=status == "accepted"
    )


def _marketplace_response_parse(response: HttpResponse) -> _ParsedResponse:
    body = _json_body(response)
    deliveries = body.get("deliveries") if isinstance(body, dict) else None
    if response.status_code != 202 or not isinstance(deliveries, list) or len(deliveries) != 1:
        return _ParsedResponse(response.status_code, body, problem=_http_problem(response, body))
    entry = deliveries[0]
    return _ParsedResponse(
        response.status_code, body, delivery=entry.get("delivery"), new=entry.get("created")
    )


def _canonical_response_parse(response: HttpResponse) -> _ParsedResponse:
    body = _json_body(response)
    delivery = body.get("delivery") if isinstance(body, dict) else None
    if response.status_code not in (201, 202) or delivery is None:
        return _ParsedResponse(response.status_code, body, problem=_http_problem(response, body))
    return _ParsedResponse(response.status_code, body, delivery=delivery)


def _json_body(response: HttpResponse) -> Any:
    try:
        return json.loads(response.content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _error_code(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code", "")) if isinstance(error, dict) else ""


def _http_problem(response: HttpResponse, body: Any) -> str:
    code = _error_code(body)
    return f"HTTP {response.status_code}{' ' + code if code else ''}"


def _error_text(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:DETAIL_MAX_LENGTH]


CONNECTORS: dict[str, _Connector] = {
    ChannelKind.SHOPIFY: _Connector(
        id_kinds=(ExternalIdKind.SHOPIFY_VARIANT, ExternalIdKind.SKU),
        order_id=str,
        request=_shopify_request,
        parse=_webhook_response_parse,
        signed=True,
    ),
    ChannelKind.WOOCOMMERCE: _Connector(
        id_kinds=(ExternalIdKind.SKU,),
        order_id=str,
        request=_woocommerce_request,
        parse=_webhook_response_parse,
        signed=True,
    ),
    ChannelKind.SQUARE: _Connector(
        id_kinds=(ExternalIdKind.POS_CATALOG_OBJECT,),
        order_id=lambda number: f"SMOKE{number}",
        request=_square_request,
        parse=_webhook_response_parse,
        signed=True,
    ),
    ChannelKind.AMAZON: _Connector(
        id_kinds=(
            ExternalIdKind.AMAZON_SELLER_SKU,
            ExternalIdKind.AMAZON_ASIN,
            ExternalIdKind.SKU,
        ),
        order_id=lambda number: f"smoke-{number}",
        request=_amazon_request,
        parse=_marketplace_response_parse,
        signed=False,
    ),
    ChannelKind.EBAY: _Connector(
        id_kinds=(ExternalIdKind.SKU, ExternalIdKind.EBAY_LEGACY_ITEM),
        order_id=lambda number: f"smoke-{number}",
        request=_ebay_request,
        parse=_marketplace_response_parse,
        signed=False,
    ),
    ChannelKind.CANONICAL: _Connector(
        id_kinds=(ExternalIdKind.SKU,),
        order_id=lambda number: f"smoke-{number}",
        request=_canonical_request,
        parse=_canonical_response_parse,
        signed=False,
    ),
}
