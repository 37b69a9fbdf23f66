"""Property tests: the channel adapters and money rounding hold their contracts for any input.

Adapters: every channel adapter gets any JSON value, and mutations of the real samples in
samples/ (keys dropped, values replaced by other JSON types, huge and NaN-like numbers, NUL
characters, lone surrogates, unicode). The pipeline's parsing chain is the storable-text
check, the adapter, the storage limits and rounding to the currency. It must end either in a
canonical order that meets assert_canonical or in AdapterError naming the field and the
reason. Any other exception is a bug. The file splitter and the delivery-key functions get
the same inputs.

Money: rounding to a currency's minor unit is idempotent, keeps the unit's exponent, moves an
amount by at most half a unit, rounds ties away from zero (ROUND_HALF_UP, as omsguard.money
documents) and is symmetric around zero. Minor units follow ISO 4217 for zero-decimal (JPY)
and three-decimal (KWD, BHD) currencies. Every value that is no currency code raises
UnknownCurrency, and a float amount raises TypeError.

Examples per property: `sized(full=3_000, ci=50)`. CI runs derandomized, so each run sends
the same examples. Run alone: `pytest tests/reliability/test_properties.py`.
"""

import copy
import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.models import Channel, ChannelKind
from omsguard.money import UnknownCurrency, is_currency, minor_units, money_format, money_round
from orders.adapters import adapter_for, amazon, ebay, square, woocommerce
from orders.canonical import (
    MAX_QUANTITY,
    AdapterError,
    CanonicalOrder,
    check_order_limits,
    check_storable_json,
)
from orders.channel_ingest import channel_file_entries
from orders.pipeline import order_fields
from tests.reliability.figures import figure, scale, sized

SUITE = "properties"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"

EXAMPLES = int(sized(full=3_000, ci=50))
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=scale() == "ci",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- JSON values ------------------------------------------------------------------------------

# Strings a channel never should send but a broken or hostile one might.
AWKWARD_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1",
    "0",
    "1e-400",
    "9" * 5_000,
    "0x10",
    "١٢٣",
    "²",
    "Grüße 東京 🚚",
    "x" * 1_000,
    "2024-13-45T25:61:00Z",
    "2024-11-04T10:15:33",
    "9999-12-31T23:59:59-14:00",
    "usd",
    "XAU",
]
AWKWARD_NUMBERS = [
    0,
    -1,
    2**63,
    -(2**63) - 1,
    10**30,
    1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    0.1,
    -0.0,
    True,
    False,
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(AWKWARD_TEXT)
    | st.sampled_from(AWKWARD_NUMBERS)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


# --- Samples and their mutations --------------------------------------------------------------


def _load(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


def _numbered(directory: str) -> list[Any]:
    return [_load(path) for path in sorted((SAMPLES / directory).glob("[0-9][0-9]-*.json"))]


def _square_samples() -> list[dict]:
    """The recorded Square payloads, as the webhook stores them: the event and its order."""
    payloads = []
    for path in sorted((SAMPLES / "square" / "events").glob("*.json")):
        event = _load(path)
        order = _load(SAMPLES / "square" / "orders" / f"{event['data']['id']}.json")["order"]
        payloads.append({"event": event, "order": order})
    return payloads


SAMPLE_PAYLOADS: dict[str, list[Any]] = {
    ChannelKind.SHOPIFY: _numbered("shopify"),
    ChannelKind.WOOCOMMERCE: _numbered("woocommerce"),
    ChannelKind.CANONICAL: _numbered("canonical"),
    ChannelKind.AMAZON: _numbered("amazon"),
    ChannelKind.EBAY: _numbered("ebay"),
    ChannelKind.SQUARE: _square_samples(),
}


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Yield the path (keys and indexes) of every value nested in `value`."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _parent(payload: Any, path: tuple) -> Any:
    for key in path[:-1]:
        payload = payload[key]
    return payload


def _swapped_type(value: Any) -> Any:
    """The value as another JSON type: text as a number or list, a number as text, and so on."""
    if isinstance(value, str):
        return [value] if not value.strip().lstrip("-").replace(".", "").isdigit() else 12.5
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return {}


@st.composite
def mutated_samples(draw: Callable, kind: str) -> Any:
    """A sample payload of the channel with one to four random changes at random places."""
    payload = copy.deepcopy(draw(st.sampled_from(SAMPLE_PAYLOADS[kind])))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = list(_paths(payload))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(payload, path)
        change = draw(st.sampled_from(["drop", "replace", "swap type"]))
        if change == "drop":
            del parent[path[-1]]
        elif change == "replace":
            parent[path[-1]] = draw(json_values)
        else:
            parent[path[-1]] = _swapped_type(parent[path[-1]])
    return payload


# --- The parsing chain and what a parsed order must satisfy -----------------------------------


# Per property: examples that ended in a result ("ok"), in a clear error ("error") or in a
# failure. Hypothesis replays a failing example while it shrinks it, so one failure may count
# several times; any failure fails the test.
OUTCOMES: dict[str, Counter] = {}


@contextmanager
def counted(name: str) -> Iterator[Counter]:
    """Count one example of a property; an exception out of the body counts as a failure."""
    outcomes = OUTCOMES.setdefault(name, Counter())
    try:
        yield outcomes
    except BaseException:
        outcomes["failure"] += 1
        raise


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    yield
    for name, outcomes in OUTCOMES.items():
        figure(SUITE, f"{name}: examples", sum(outcomes.values()))
        figure(SUITE, f"{name}: clear errors", outcomes["error"])
        figure(SUITE, f"{name}: failures", outcomes["failure"])


def parse_as_pipeline(kind: str, payload: Any) -> CanonicalOrder:
    """Run the pipeline's parsing steps on a decoded body; raise AdapterError when it fails."""
    check_storable_json(payload)
    order = adapter_for(kind).parse_order(payload)
    check_order_limits(order)
    order_fields(order)
    for line in order.lines:
        money_round(line.unit_price, order.currency)
    return order


def assert_canonical(order: CanonicalOrder) -> None:
    """Check what the pipeline relies on in an order an adapter returned."""
    assert isinstance(order, CanonicalOrder)
    assert order.channel_order_id.strip()
    assert is_currency(order.currency)
    for name in ("subtotal", "shipping_total", "tax_total", "discount_total", "total"):
        amount = getattr(order, name)
        assert isinstance(amount, Decimal), name
        assert amount.is_finite(), (name, amount)
        assert amount >= 0, (name, amount)
    assert order.lines
    for position, line in enumerate(order.lines, start=1):
        assert line.position == position
        assert isinstance(line.quantity, int) and not isinstance(line.quantity, bool)
        # Amazon reports a cancelled order's items with quantity 0.
        assert (0 if order.state == "cancelled" else 1) <= line.quantity <= MAX_QUANTITY
        assert isinstance(line.unit_price, Decimal) and line.unit_price.is_finite()
        assert line.unit_price >= 0
        assert line.title
    assert order.state in ("open", "cancelled", "incomplete")
    for address in (order.shipping_address, order.billing_address):
        assert address is None or all(isinstance(value, str) for value in address.values())


def assert_clear(error: AdapterError) -> None:
    assert isinstance(error.field, str) and error.field
    assert isinstance(error.reason, str) and error.reason


def check_adapter(kind: str, payload: Any, name: str) -> None:
    with counted(name) as outcomes:
        try:
            order = parse_as_pipeline(kind, payload)
        except AdapterError as error:
            assert_clear(error)
            outcomes["error"] += 1
            return
        assert_canonical(order)
        outcomes["ok"] += 1


# --- Adapter properties -----------------------------------------------------------------------

ADAPTER_KINDS = list(SAMPLE_PAYLOADS)


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_samples_parse_to_canonical_orders(kind):
    # The mutations start from these; a sample that no longer parses would test little.
    for payload in SAMPLE_PAYLOADS[kind]:
        assert_canonical(parse_as_pipeline(kind, payload))


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_adapter_any_json(kind):
    @PROPERTY_SETTINGS
    @given(payload=json_values)
    def run(payload):
        check_adapter(kind, payload, f"{kind} adapter, any JSON")

    run()


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_adapter_mutated_samples(kind):
    @PROPERTY_SETTINGS
    @given(payload=mutated_samples(kind))
    def run(payload):
        check_adapter(kind, payload, f"{kind} adapter, mutated samples")

    run()


# The functions that read a delivery's id before the adapter runs, per channel kind.
DELIVERY_KEYS: dict[str, Callable[[Any], str]] = {
    ChannelKind.AMAZON: amazon.order_key,
    ChannelKind.EBAY: ebay.order_key,
    ChannelKind.WOOCOMMERCE: woocommerce.delivery_key,
    ChannelKind.SQUARE: lambda payload: square.event_order_id(
        payload.get("event") if isinstance(payload, dict) else payload
    ),
}


@pytest.mark.parametrize("kind", list(DELIVERY_KEYS))
def test_delivery_key_any_input(kind):
    @PROPERTY_SETTINGS
    @given(payload=json_values | mutated_samples(kind))
    def run(payload):
        with counted(f"{kind} delivery key") as outcomes:
            try:
                key = DELIVERY_KEYS[kind](payload)
            except AdapterError as error:
                assert_clear(error)
                outcomes["error"] += 1
                return
            assert isinstance(key, str) and key
            outcomes["ok"] += 1

    run()


@pytest.mark.parametrize("kind", [ChannelKind.AMAZON, ChannelKind.EBAY])
def test_file_entries_any_input(kind):
    """Any decoded file splits into entries or raises AdapterError, as `ingest_file` needs."""
    channel = Channel(kind=kind, code=f"{kind}-file")
    pages = st.builds(lambda orders: {"payload": {"Orders": orders}}, json_values) | st.builds(
        lambda orders: {"orders": orders}, st.lists(json_values, max_size=3)
    )

    @PROPERTY_SETTINGS
    @given(data=json_values | pages | st.lists(mutated_samples(kind), max_size=3))
    def run(data):
        with counted(f"{kind} file entries") as outcomes:
            try:
                entries = channel_file_entries(channel=channel, data=data)
            except AdapterError as error:
                assert_clear(error)
                outcomes["error"] += 1
                return
            assert isinstance(entries, list)
            outcomes["ok"] += 1

    run()


# --- Money properties -------------------------------------------------------------------------

CURRENCIES = ["USD", "EUR", "GBP", "JPY", "KRW", "CLP", "KWD", "BHD", "OMR", "TND", "CLF"]
# Amounts the stored orders can hold (under 1e11), with digits beyond every minor unit.
amounts = st.decimals(
    min_value=Decimal("-1e11"), max_value=Decimal("1e11"), allow_nan=False, allow_infinity=False
)
currencies = st.sampled_from(CURRENCIES)


def _unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


@PROPERTY_SETTINGS
@given(amount=amounts, currency=currencies)
def test_rounding_idempotent_and_exact_to_unit(amount, currency):
    with counted("money: rounding idempotent, within half a unit") as outcomes:
        rounded = money_round(amount, currency)

        assert money_round(rounded, currency) == rounded
        assert rounded.as_tuple().exponent == -minor_units(currency)
        assert abs(rounded - amount) <= _unit(currency) / 2
        outcomes["ok"] += 1


@PROPERTY_SETTINGS
@given(amount=amounts, currency=currencies)
def test_rounding_symmetric_around_zero(amount, currency):
    with counted("money: rounding symmetric around zero") as outcomes:
        assert money_round(-amount, currency) == -money_round(amount, currency)
        outcomes["ok"] += 1


@PROPERTY_SETTINGS
@given(units=st.integers(min_value=-(10**10), max_value=10**10), currency=currencies)
def test_rounding_ties_away_from_zero(units, currency):
    with counted("money: ties round away from zero") as outcomes:
        unit = _unit(currency)
        half = unit / 2 if units >= 0 else -unit / 2

        expected = (units + 1) * unit if units >= 0 else (units - 1) * unit
        assert money_round(units * unit + half, currency) == expected
        outcomes["ok"] += 1


@PROPERTY_SETTINGS
@given(amount=amounts, currency=currencies)
def test_format_shows_exactly_the_minor_digits(amount, currency):
    with counted("money: format has the minor digits") as outcomes:
        formatted = money_format(amount, currency)

        whole, _, fraction = formatted.lstrip("-").partition(".")
        assert whole.isdigit()
        assert len(fraction) == minor_units(currency)
        assert Decimal(formatted) == money_round(amount, currency)
        outcomes["ok"] += 1


@pytest.mark.parametrize(
    ("currency", "formatted"),
    [
        ("JPY", "1235"),
        ("KRW", "1235"),
        ("USD", "1234.57"),
        ("KWD", "1234.568"),
        ("BHD", "1234.568"),
    ],
)
def test_zero_and_three_decimal_currencies(currency, formatted):
    assert money_format(Decimal("1234.5675"), currency) == formatted


@PROPERTY_SETTINGS
@given(code=json_values)
def test_non_currency_values_rejected_clearly(code):
    with counted("money: non-currency codes rejected") as outcomes:
        if isinstance(code, str) and is_currency(code):
            outcomes["ok"] += 1
            return
        with pytest.raises(UnknownCurrency):
            minor_units(code)
        assert is_currency(code) is False
        outcomes["error"] += 1


@PROPERTY_SETTINGS
@given(amount=st.floats(allow_nan=True, allow_infinity=True), currency=currencies)
def test_float_amounts_rejected(amount, currency):
    with counted("money: float amounts rejected") as outcomes:
        with pytest.raises(TypeError, match="Decimal"):
            money_round(amount, currency)
        outcomes["error"] += 1
