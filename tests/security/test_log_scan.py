"""The logs carry no secret, token, password, session id, customer contact, street address or
card number.

One test runs a representative set of operations with every logger captured at DEBUG. Each
record is formatted through the product's JSON formatter from settings.LOGGING, so the fields
passed in `extra` are scanned too, and each line is searched for every sensitive value the
operations used.
"""

import copy
import json
import logging
import logging.config
import re

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse
from django.utils.crypto import get_random_string
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Channel, ChannelKind, Sku
from guardrails.models import Verdict
from monitoring.models import AlertNotification, NotificationKind, NotificationStatus
from orders.models import ChannelApiGrant, Delivery, DeliveryOutcome, Order
from tests.conftest import SECRET, as_body, make_user, order_payload, signed_headers
from tests.guardrails.conftest import default_policies  # noqa: F401
from tests.monitoring.test_notifications import WebhookServer, raise_alert, target

pytestmark = pytest.mark.django_db

FORGED_SECRET = "forged-secret-7Qx!"
CARD_NUMBER = "4111 1111 1111 1111"
PHONE = "+1 512-555-0142"
STREET = "12 Birch Lane"
EMAIL = "ada.quill@example.com"
# Austin, TX with a California ZIP code: the order is held and the customer gets an email.
HELD_ADDRESS = {
    "name": "Ada Quill",
    "address1": STREET,
    "address2": "Apt 4",
    "city": "Austin",
    "province_code": "TX",
    "zip": "94105",
    "country_code": "US",
    "phone": PHONE,
}
CORRECTED_FIELDS = {
    "name": "Ada Quill",
    "company": "",
    "address1": STREET,
    "address2": "Apt 4",
    "city": "Austin",
    "province_code": "TX",
    "zip": "78701",
    "country_code": "US",
}
CANONICAL_SAMPLE = settings.BASE_DIR / "samples" / "canonical" / "01-normal.json"
LINK = re.compile(r"/confirm/address/([^/\s]+)/")
# 13 to 19 digits, optionally in groups split by single spaces or hyphens.
CARD_LIKE = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])")


def product_formatter() -> logging.Formatter:
    """Build the JSON formatter the console handler of settings.LOGGING uses."""
    config = copy.deepcopy(settings.LOGGING["formatters"]["json"])
    return logging.config.DictConfigurator({"version": 1}).configure_formatter(config)


def luhn_valid(digits: str) -> bool:
    """Return whether the digits pass the Luhn check that payment card numbers pass."""
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


# --- The operations, each through its real entry point ---------------------------------------


def shopify_orders_posted(post_webhook, monkeypatch) -> Order:
    """A held order, a forged delivery and a delivery that ends in the dead-letter state."""
    payload = order_payload(
        email=EMAIL,
        phone=PHONE,
        shipping_address=HELD_ADDRESS,
        billing_address=HELD_ADDRESS,
        note=f"Paid with card {CARD_NUMBER}",
    )
    body = as_body(payload)
    assert post_webhook(body).status_code == 200

    forged = signed_headers(body, secret=FORGED_SECRET, webhook_id="wh-forged")
    assert post_webhook(body, forged).status_code == 401

    dead_body = as_body({**payload, "id": 5837219471391, "name": "#1002"})
    with monkeypatch.context() as patch:
        # An unexpected error inside processing sends the delivery to the dead letter state.
        patch.setattr("orders.hygiene.hygiene_checks", lambda: [_broken_check])
        post_webhook(dead_body, signed_headers(dead_body, webhook_id="wh-dead"))
    assert Delivery.objects.get(delivery_id="wh-dead").outcome == DeliveryOutcome.DEAD_LETTER

    return Order.objects.get(channel_order_id=str(payload["id"]))


def _broken_check(*, order):
    raise ZeroDivisionError(f"simulated bug on order {order.pk}")


def address_corrected_by_customer(mailoutbox) -> str:
    """Correct the address through the confirmation email's link and return the link's token."""
    match = LINK.search(mailoutbox[0].body)
    assert match, mailoutbox[0].body
    customer = Client(enforce_csrf_checks=True)
    customer.cookies["csrftoken"] = get_random_string(32)
    data = {"csrfmiddlewaretoken": customer.cookies["csrftoken"].value, "action": "correct"}

    response = customer.post(match.group(0), data | CORRECTED_FIELDS)

    assert response.status_code == 200
    return match.group(1)


def address_decision_reviewed(order: Order, bot_api: APIClient, reviewer: User) -> None:
    """Propose a new street line as an AI agent, which the CS manager accepts in the queue."""
    order.refresh_from_db()
    after = {**order.shipping_address, "address1": "12 Birch Ln"}
    response = bot_api.post(
        "/api/v1/decisions/",
        {
            "action": "correct_shipping_address",
            "order": order.pk,
            "before": {"shipping_address": order.shipping_address},
            "after": {"shipping_address": after},
            "confidence": "0.97",
            "model_name": "gpt-addr",
            "model_version": "3",
            "rationale": f"Normalised {STREET}.",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["verdict"] == Verdict.QUEUED_FOR_REVIEW

    manager_api = APIClient()
    manager_api.force_authenticate(reviewer)
    item_id = response.json()["review_item"]
    accept_url = f"/api/v1/review-items/{item_id}/accept/"
    accepted = manager_api.post(accept_url, {"note": f"{STREET} is Birch Ln."}, format="json")
    assert accepted.status_code == 200, accepted.json()
    order.refresh_from_db()
    assert order.shipping_address["address1"] == "12 Birch Ln"


def canonical_order_posted(django_capture_on_commit_callbacks) -> str:
    """POST the canonical sample with an integration's API token and return the token key."""
    channel = Channel.objects.create(kind=ChannelKind.CANONICAL, code="demo-canonical")
    robot = make_user("robot", "integration")
    ChannelApiGrant.objects.create(user=robot, channel=channel)
    for code in ("TOWEL-BATH-WHT-OS", "CUSHION-LINEN-NAT-OS", "BLANKET-THROW-OAT-OS"):
        Sku.objects.create(code=code, title=code, price="10.00", currency="USD")
    token = Token.objects.create(user=robot)
    client = Client(headers={"Authorization": f"Token {token.key}", "Idempotency-Key": "k-1"})

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("order-list"),
            data=CANONICAL_SAMPLE.read_bytes(),
            content_type="application/json",
        )

    # 202: the order is processed after the response, at commit.
    assert response.status_code == 202, response.content
    assert Order.objects.filter(channel_order_id="B2B-2024-00317").exists()
    assert client.get(reverse("order-list")).status_code == 200
    return token.key


def logged_in_and_failed(password: str) -> str:
    """Log "alice" in after a failed attempt and return the session id."""
    browser = Client()
    failed = browser.post(
        reverse("login"), {"username": "alice", "password": "wrong-Passw0rd-for-alice"}
    )
    assert failed.status_code == 200

    browser.post(reverse("login"), {"username": "alice", "password": password})

    assert "sessionid" in browser.cookies
    assert browser.get(reverse("reviews:queue")).status_code == 200
    return browser.cookies["sessionid"].value


def alert_sent_to_webhook(django_capture_on_commit_callbacks) -> str:
    """Notify a chat webhook whose URL carries a token: once refused, then accepted."""
    # The test server listens on 127.0.0.1, which alert webhooks reach only when allowed.
    allow_loopback = override_settings(OMSGUARD_NOTIFY_ALLOWED_NETWORKS=["127.0.0.1/32"])
    with allow_loopback, WebhookServer([500, 200]) as server:
        url = server.url()
        target(NotificationKind.WEBHOOK, url)
        with django_capture_on_commit_callbacks(execute=True):
            raise_alert()

    assert AlertNotification.objects.get().status == NotificationStatus.SENT
    return url.rsplit("/", 1)[1]


# --- The scan --------------------------------------------------------------------------------


@pytest.fixture
def reviewer(db) -> User:
    return make_user("morgan", "cs_manager")


@pytest.fixture
def bot_api(channel) -> APIClient:
    bot = make_user("agent-bot", "integration")
    ChannelApiGrant.objects.create(user=bot, channel=channel)
    client = APIClient()
    client.force_authenticate(bot)
    return client


@pytest.mark.usefixtures("default_policies")
def test_logs_carry_no_secrets_or_personal_data(
    caplog,
    monkeypatch,
    mailoutbox,
    django_capture_on_commit_callbacks,
    channel,
    catalog,
    post_webhook,
    bot_api,
    reviewer,
):
    caplog.set_level(logging.DEBUG)
    agent = make_user("alice", "cs_agent")
    canonical = json.loads(CANONICAL_SAMPLE.read_text())

    order = shopify_orders_posted(post_webhook, monkeypatch)
    confirmation_token = address_corrected_by_customer(mailoutbox)
    address_decision_reviewed(order, bot_api, reviewer)
    token_key = canonical_order_posted(django_capture_on_commit_callbacks)
    session_id = logged_in_and_failed(f"pw-{agent.username}")
    hook_token = alert_sent_to_webhook(django_capture_on_commit_callbacks)

    sensitive = {
        "webhook secret": SECRET,
        "forged webhook secret": FORGED_SECRET,
        "notification webhook token": hook_token,
        "API token key": token_key,
        "address confirmation token": confirmation_token,
        "password": f"pw-{agent.username}",
        "failed login password": "wrong-Passw0rd-for-alice",
        "session id": session_id,
        "street address": STREET,
        "canonical street address": canonical["shipping_address"]["address1"],
        "canonical billing street address": canonical["billing_address"]["address1"],
        "customer email": EMAIL,
        "canonical customer email": canonical["customer"]["email"],
        "customer phone": PHONE,
        "canonical phone": canonical["shipping_address"]["phone"],
    }
    leaks = log_leaks(caplog.records, sensitive)

    assert len(caplog.records) > 20, "the operations logged too little to prove anything"
    assert leaks == []


def log_leaks(records: list[logging.LogRecord], sensitive: dict[str, str]) -> list[str]:
    """Return "<logger>: <what leaked> in <message>" for each leak found."""
    formatter = product_formatter()
    leaks = []
    for record in records:
        line = formatter.format(record)
        # The formatter escapes non-ASCII characters, so search the decoded text as well.
        text = line + "\n" + json.dumps(json.loads(line), ensure_ascii=False)
        found = [label for label, value in sensitive.items() if value in text]
        found += [f"card number {number!r}" for number in card_numbers(text)]
        leaks += [f"{record.name}: {label} in {record.getMessage()!r}" for label in found]
    return leaks


def card_numbers(text: str) -> list[str]:
    """Return the distinct card-like numbers in `text` that pass the Luhn check."""
    numbers = []
    for match in CARD_LIKE.finditer(text):
        digits = re.sub(r"\D", "", match.group(0))
        if luhn_valid(digits) and match.group(0) not in numbers:
            numbers.append(match.group(0))
    return numbers


def test_scan_finds_leaks_in_message_and_extra():
    logger = logging.getLogger("tests.security.leaky")
    records = [
        logger.makeRecord(logger.name, logging.INFO, __file__, 1, "sent to %s", (EMAIL,), None),
        logger.makeRecord(
            logger.name, logging.INFO, __file__, 2, "saved", (), None, extra={"secret": SECRET}
        ),
        logger.makeRecord(logger.name, logging.INFO, __file__, 3, f"paid {CARD_NUMBER}", (), None),
        logger.makeRecord(logger.name, logging.INFO, __file__, 4, "order 5837219471390", (), None),
    ]

    leaks = log_leaks(records, {"customer email": EMAIL, "webhook secret": SECRET})

    assert leaks == [
        f"tests.security.leaky: customer email in 'sent to {EMAIL}'",
        "tests.security.leaky: webhook secret in 'saved'",
        f"tests.security.leaky: card number {CARD_NUMBER!r} in 'paid {CARD_NUMBER}'",
    ]
