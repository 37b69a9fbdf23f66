"""Customer address confirmation: the email, the link, confirming, correcting, and resending."""

import logging
import re
import smtplib
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.core import signing
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import get_random_string

from guardrails.models import AuditEntry, GuardrailSettings, ReviewOutcome
from guardrails.services import decision_propose
from orders.models import Delivery, Order, OrderStatus
from orders.tasks import process_delivery
from reviews import confirmations
from reviews.confirmation_tasks import address_confirmations_send_due
from reviews.models import AddressConfirmation, ConfirmationAnswer, ReviewItem, ReviewStatus
from reviews.services import review_item_accept
from tests.conftest import as_body, make_user, order_payload, signed_headers
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SHIPPING_ADDRESS,
    locations_fixture,
    order_fixture,
)

pytestmark = pytest.mark.django_db

# Austin, TX with a California ZIP code: one error, score 0.70, which no rule can correct.
WRONG_ZIP_ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Lane",
    "city": "Austin",
    "province_code": "TX",
    "zip": "94105",
    "country_code": "US",
}
GOOD_FIELDS = {
    "name": "Ada Quill",
    "company": "",
    "address1": "12 Birch Lane",
    "address2": "Apt 4",
    "city": "Austin",
    "province_code": "TX",
    "zip": "78701",
    "country_code": "us",
}
SECOND = timedelta(seconds=1)
# The AI's proposed correction of SHIPPING_ADDRESS.
CORRECTED = {**SHIPPING_ADDRESS, "address1": "12 Birch Ln", "zip": "78702"}
LINK = re.compile(r"http://127\.0\.0\.1:8000(/confirm/address/[^/\s]+/)")


class FlakySmtpBackend(LocmemBackend):
    """Stands in for an SMTP server that refuses the first `failures` messages."""

    failures = 0
    calls = 0

    def send_messages(self, messages):
        FlakySmtpBackend.calls += 1
        if FlakySmtpBackend.calls <= FlakySmtpBackend.failures:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)


@pytest.fixture(name="flaky_smtp")
def flaky_smtp_fixture(settings):
    def configure(failures: int) -> None:
        FlakySmtpBackend.failures = failures
        FlakySmtpBackend.calls = 0
        settings.EMAIL_BACKEND = f"{__name__}.FlakySmtpBackend"

    return configure


@pytest.fixture(name="held_order")
def held_order_fixture(channel, catalog, post_webhook) -> Order:
    """An order held for its address; the confirmation email went out at commit."""
    post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS)))
    return Order.objects.get()


# Four warnings (no name, "USA", "Calif.", a ZIP+4 without hyphen): 0.80. The normalised
# proposal scores 0.95, so with a threshold of 0.85 the order is held and the proposal is valid.
FIXABLE_ADDRESS = {
    "address1": "1 Market Street",
    "city": "San Francisco",
    "province": "Calif.",
    "zip": "941051234",
    "country": "USA",
}


@pytest.fixture(name="fixable_order")
def fixable_order_fixture(channel, catalog, post_webhook, settings) -> Order:
    """An order held for its address whose proposed correction passes validation."""
    settings.OMSGUARD_ADDRESS_MIN_SCORE = "0.85"
    post_webhook(as_body(order_payload(shipping_address=FIXABLE_ADDRESS)))
    return Order.objects.get()


@pytest.fixture(name="customer")
def customer_fixture() -> Client:
    """The customer's phone: no login, CSRF checked as in production."""
    return Client(enforce_csrf_checks=True)


def link_path(message) -> str:
    match = LINK.search(message.body)
    assert match, message.body
    return match.group(1)


def post_form(client: Client, path: str, data: dict):
    """Post the form with a valid CSRF token, as a browser that opened the page before would."""
    if "csrftoken" not in client.cookies:
        client.cookies["csrftoken"] = get_random_string(32)
    token = client.cookies["csrftoken"].value
    return client.post(path, {"csrfmiddlewaretoken": token, **data})


def test_email_sent_with_link(held_order, mailoutbox):
    confirmation = AddressConfirmation.objects.get()
    item = ReviewItem.objects.get()

    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["ada@example.com"]
    assert "#1001" in message.subject
    assert confirmation.proposed_address["address1"] in message.body
    path = link_path(message)
    assert path in message.alternatives[0][0]
    token = path.split("/")[3]
    nonce = signing.TimestampSigner(salt=confirmations.SIGNER_SALT).unsign(token)
    assert nonce == confirmation.nonce
    assert confirmation.review_item == item
    assert confirmation.proposed_address == item.proposal["normalized"]
    assert confirmation.sent_at is not None
    assert confirmation.send_attempts == 1
    assert abs(confirmation.expires_at - confirmation.created_at - timedelta(hours=72)) < SECOND


def test_no_email_no_confirmation(channel, catalog, post_webhook, mailoutbox):
    post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS, email="")))

    assert ReviewItem.objects.filter(kind="address").count() == 1
    assert not AddressConfirmation.objects.exists()
    assert mailoutbox == []


def test_page_shows_proposed_address(fixable_order, mailoutbox, customer):
    response = customer.get(link_path(mailoutbox[0]))

    html = response.content.decode()
    assert response.status_code == 200
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "1 Market St" in html
    assert 'value="confirm"' in html
    assert "csrfmiddlewaretoken" in html
    assert "no-cache" in response["Cache-Control"]


def test_invalid_proposal_asks_for_correction(held_order, mailoutbox, customer):
    path = link_path(mailoutbox[0])

    page = customer.get(path)
    posted = post_form(customer, path, {"action": "confirm"})

    html = page.content.decode()
    assert 'value="confirm"' not in html
    assert 'value="correct"' in html
    assert "cannot ship to it as it" in html
    assert posted.status_code == 400
    held_order.refresh_from_db()
    assert held_order.shipping_address["zip"] == "94105"
    assert AddressConfirmation.objects.get().answered_at is None
    assert ReviewItem.objects.get().status == ReviewStatus.OPEN


def test_confirm_applies_and_releases(fixable_order, mailoutbox, customer):
    held_order = fixable_order
    path = link_path(mailoutbox[0])
    confirmation = AddressConfirmation.objects.get()

    with time_machine.travel(timezone.now() + timedelta(minutes=7), tick=False):
        response = post_form(customer, path, {"action": "confirm"})

    assert response.status_code == 200
    assert "Thank you" in response.content.decode()
    held_order.refresh_from_db()
    assert held_order.status == OrderStatus.READY
    assert held_order.hold_reasons == []
    assert held_order.shipping_address == confirmation.proposed_address
    item = ReviewItem.objects.get()
    assert item.status == ReviewStatus.RESOLVED
    assert item.decided_by is None
    assert item.decision["by"] == "customer"
    assert item.decision["answer"] == "confirmed"
    assert 7 * 60 <= item.decision["time_to_answer_seconds"] < 8 * 60
    confirmation.refresh_from_db()
    assert confirmation.answer == ConfirmationAnswer.CONFIRMED
    assert timedelta(minutes=7) <= confirmations.time_to_answer(confirmation) < timedelta(minutes=8)
    entry = AuditEntry.objects.get(action="review_item.resolved", target_id=str(item.pk))
    assert entry.actor_label == "customer a***@example.com"
    assert AuditEntry.objects.filter(
        action="order.shipping_address_changed", actor_label="customer a***@example.com"
    ).exists()


def test_post_without_csrf_rejected(held_order, mailoutbox, customer):
    response = customer.post(link_path(mailoutbox[0]), {"action": "confirm"})

    assert response.status_code == 403
    assert ReviewItem.objects.get().status == ReviewStatus.OPEN


def test_correct_applies_good_address(held_order, mailoutbox, customer):
    path = link_path(mailoutbox[0])

    form_page = customer.get(path + "?correct=1")
    response = post_form(customer, path, {"action": "correct", **GOOD_FIELDS})

    assert 'name="address1"' in form_page.content.decode()
    assert response.status_code == 200
    held_order.refresh_from_db()
    assert held_order.status == OrderStatus.READY
    assert held_order.shipping_address["zip"] == "78701"
    assert held_order.shipping_address["address2"].upper() == "APT 4"
    assert held_order.address_score >= Decimal("0.80")
    confirmation = AddressConfirmation.objects.get()
    assert confirmation.answer == ConfirmationAnswer.CORRECTED
    assert confirmation.corrected_address["zip"] == "78701"
    assert confirmation.corrected_address["country_code"] == "US"
    item = ReviewItem.objects.get()
    assert item.status == ReviewStatus.RESOLVED
    assert item.decision["answer"] == "corrected"


def test_correct_low_score_keeps_item_open(held_order, mailoutbox, customer):
    path = link_path(mailoutbox[0])
    # A Florida ZIP code in Texas: still below the threshold.
    fields = {**GOOD_FIELDS, "zip": "33101", "address2": ""}

    response = post_form(customer, path, {"action": "correct", **fields})

    assert response.status_code == 200
    assert "Our team checks it" in response.content.decode()
    held_order.refresh_from_db()
    assert held_order.status == OrderStatus.ON_HOLD
    assert held_order.shipping_address == WRONG_ZIP_ADDRESS
    item = ReviewItem.objects.get()
    assert item.status == ReviewStatus.OPEN
    assert item.proposal["normalized"]["zip"] == "33101"
    assert item.proposal["customer_correction"]["score"] == "0.70"
    reason_fields = [reason["field"] for reason in item.proposal["customer_correction"]["reasons"]]
    assert "postal_code" in reason_fields
    assert "zip" not in reason_fields
    assert item.proposal["parsed"]["postal_code"] == "33101"
    assert "zip" not in item.proposal["parsed"]
    zip_row = next(row for row in item.proposal["comparison"] if row["field"] == "zip")
    assert zip_row == {
        "field": "zip",
        "received": "94105",
        "suggested": "33101",
        "changed": True,
        "unresolved": [
            "ZIP code '33101' is not used in Texas but in Florida. "
            "Check whether the ZIP code or the state is wrong."
        ],
    }
    confirmation = AddressConfirmation.objects.get()
    assert confirmation.answer == ConfirmationAnswer.CORRECTED
    # The link is used up.
    assert post_form(customer, path, {"action": "confirm"}).status_code == 409


def test_correct_form_errors(held_order, mailoutbox, customer):
    path = link_path(mailoutbox[0])
    fields = {**GOOD_FIELDS, "city": "", "country_code": "USA"}

    response = post_form(customer, path, {"action": "correct", **fields})

    html = response.content.decode()
    assert response.status_code == 400
    assert "This field is required." in html
    assert "two-letter country code" in html
    assert AddressConfirmation.objects.get().answered_at is None
    assert ReviewItem.objects.get().status == ReviewStatus.OPEN


def test_expired_link(held_order, mailoutbox, customer):
    path = link_path(mailoutbox[0])
    client_page = customer.get(path)

    with time_machine.travel(timezone.now() + timedelta(hours=72, seconds=1), tick=False):
        page = customer.get(path)
        token = customer.cookies["csrftoken"].value
        posted = customer.post(path, {"csrfmiddlewaretoken": token, "action": "confirm"})

    assert client_page.status_code == 200
    assert page.status_code == 410
    assert "expired" in page.content.decode()
    assert posted.status_code == 410
    assert ReviewItem.objects.get().status == ReviewStatus.OPEN
    held_order.refresh_from_db()
    assert held_order.status == OrderStatus.ON_HOLD


def test_expiry_follows_setting(channel, catalog, post_webhook):
    GuardrailSettings.objects.filter(pk=1).update(address_confirmation_hours=2)

    post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS)))

    confirmation = AddressConfirmation.objects.get()
    assert abs(confirmation.expires_at - confirmation.created_at - timedelta(hours=2)) < SECOND


def test_tampered_and_unknown_tokens(held_order, mailoutbox, customer):
    path = link_path(mailoutbox[0])
    token = path.split("/")[3]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    other_nonce = signing.TimestampSigner(salt=confirmations.SIGNER_SALT).sign("not-a-nonce")
    wrong_salt = signing.TimestampSigner(salt="elsewhere").sign(
        AddressConfirmation.objects.get().nonce
    )

    for bad in (tampered, other_nonce, wrong_salt, "garbage"):
        response = customer.get(reverse("confirm:address", args=[bad]))
        assert response.status_code == 404, bad
        assert "not valid" in response.content.decode()
    response = post_form(customer, path.replace(token, tampered), {"action": "confirm"})
    assert response.status_code == 404
    assert ReviewItem.objects.get().status == ReviewStatus.OPEN


def test_already_answered(fixable_order, mailoutbox, customer):
    path = link_path(mailoutbox[0])
    post_form(customer, path, {"action": "confirm"})

    page = customer.get(path)
    posted = post_form(customer, path, {"action": "correct", **GOOD_FIELDS})

    assert page.status_code == 200
    assert "already answered" in page.content.decode()
    assert posted.status_code == 409
    assert AddressConfirmation.objects.get().answer == ConfirmationAnswer.CONFIRMED


def test_settled_by_reviewer_first(held_order, mailoutbox, customer):
    path = link_path(mailoutbox[0])
    review_item_accept(item_id=ReviewItem.objects.get().pk, user=make_user("cara", "cs_manager"))

    page = customer.get(path)
    posted = post_form(customer, path, {"action": "confirm"})

    assert page.status_code == 200
    assert "nothing more to do" in page.content.decode()
    assert posted.status_code == 409
    assert AddressConfirmation.objects.get().answered_at is None


def test_resend_job_after_failure(channel, catalog, post_webhook, flaky_smtp, mailoutbox):
    flaky_smtp(failures=1)
    post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS)))

    confirmation = AddressConfirmation.objects.get()
    assert confirmation.sent_at is None
    assert confirmation.send_attempts == 1
    assert "SMTPServerDisconnected" in confirmation.last_error
    assert mailoutbox == []

    sent = address_confirmations_send_due.delay().get()

    confirmation.refresh_from_db()
    assert sent == 1
    assert confirmation.sent_at is not None
    assert confirmation.send_attempts == 2
    assert confirmation.last_error == ""
    assert len(mailoutbox) == 1
    # Sent once: the next run finds nothing to do.
    assert address_confirmations_send_due.delay().get() == 0
    assert len(mailoutbox) == 1


def test_send_never_queued_goes_out_within_15_minutes(channel, catalog, client, mailoutbox):
    """The broker lost the send at commit: the minutely job sends it."""
    started = timezone.now()
    body = as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS))
    # Without executing on-commit callbacks the processing and the send never run, so process
    # the delivery directly and drop the send the commit would have queued.
    client.post(
        reverse("webhooks:shopify", kwargs={"channel_code": "shop"}),
        data=body,
        content_type="application/json",
        headers=signed_headers(body),
    )
    process_delivery(Delivery.objects.get().pk)
    confirmation = AddressConfirmation.objects.get()
    assert confirmation.sent_at is None
    assert confirmation.send_attempts == 0

    sent_at = _run_beat_minutely(started, minutes=15)

    confirmation.refresh_from_db()
    assert sent_at is not None
    assert confirmation.sent_at - confirmation.created_at <= timedelta(minutes=15)
    assert len(mailoutbox) == 1


def test_flaky_smtp_still_within_15_minutes(channel, catalog, post_webhook, flaky_smtp, mailoutbox):
    flaky_smtp(failures=5)
    started = timezone.now()
    post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS)))

    _run_beat_minutely(started, minutes=15)

    confirmation = AddressConfirmation.objects.get()
    assert confirmation.sent_at is not None
    assert confirmation.sent_at - confirmation.created_at <= timedelta(minutes=15)
    assert confirmation.send_attempts == 6
    assert len(mailoutbox) == 1


def test_gives_up_after_max_attempts(
    channel, catalog, post_webhook, flaky_smtp, mailoutbox, settings
):
    settings.OMSGUARD_ADDRESS_CONFIRMATION_MAX_ATTEMPTS = 3
    flaky_smtp(failures=100)
    started = timezone.now()
    post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS)))

    _run_beat_minutely(started, minutes=10)

    confirmation = AddressConfirmation.objects.get()
    assert confirmation.sent_at is None
    assert confirmation.send_attempts == 3
    assert FlakySmtpBackend.calls == 3


def _run_beat_minutely(started, *, minutes: int):
    """Run the periodic send job once a minute, as beat does; return when it was sent."""
    for minute in range(1, minutes + 1):
        with time_machine.travel(started + timedelta(minutes=minute), tick=False):
            address_confirmations_send_due.delay().get()
        sent_at = AddressConfirmation.objects.values_list("sent_at", flat=True).first()
        if sent_at is not None:
            return sent_at
    return None


def test_ai_address_correction_confirmed(order, mailoutbox, customer):
    """A queued AI correction asks the customer too; confirming applies the AI's address."""
    decision = decision_propose(
        order_id=order.pk,
        action_code="correct_shipping_address",
        before={"shipping_address": SHIPPING_ADDRESS},
        after={"shipping_address": CORRECTED},
        confidence="0.97",
        model_name="gpt-addr",
        model_version="3",
    )
    confirmation = AddressConfirmation.objects.get()
    assert confirmation.review_item_id == decision.review_item_id
    assert confirmation.proposed_address == CORRECTED

    confirmations.address_confirmation_send(confirmation_id=confirmation.pk)
    response = post_form(customer, link_path(mailoutbox[0]), {"action": "confirm"})

    assert response.status_code == 200
    order.refresh_from_db()
    assert order.shipping_address == CORRECTED
    assert order.status == OrderStatus.READY
    decision.refresh_from_db()
    assert decision.review_outcome == ReviewOutcome.AGREED
    assert decision.review_item.status == ReviewStatus.RESOLVED


def test_logs_carry_no_address_or_email(channel, catalog, post_webhook, caplog, mailoutbox):
    caplog.set_level(logging.DEBUG, logger="reviews")
    post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS)))
    post_form(Client(enforce_csrf_checks=True), link_path(mailoutbox[0]), {"action": "confirm"})

    records = [r for r in caplog.records if r.name.startswith("reviews.confirm")]
    assert records
    for record in records:
        text = f"{record.getMessage()} {record.__dict__}"
        assert "ada@example.com" not in text
        assert "Birch" not in text


# --- Admin ------------------------------------------------------------------------------------


def test_admin_shows_time_to_answer(held_order, mailoutbox, customer):
    post_form(customer, link_path(mailoutbox[0]), {"action": "confirm"})
    confirmation = AddressConfirmation.objects.get()
    staff = Client()
    staff.force_login(User.objects.create_superuser("root", password="pw-root"))

    listing = staff.get(reverse("admin:reviews_addressconfirmation_changelist"))
    detail = staff.get(reverse("admin:reviews_addressconfirmation_change", args=[confirmation.pk]))

    assert listing.status_code == 200
    assert "time to answer" in listing.content.decode().lower()
    assert detail.status_code == 200
    assert "ada@example.com" in detail.content.decode()


def test_admin_masks_without_pii_permission(held_order):
    confirmation = AddressConfirmation.objects.get()
    user = make_user("viewer", None)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.user_permissions.add(Permission.objects.get(codename="view_addressconfirmation"))
    staff = Client()
    staff.force_login(user)

    html = staff.get(
        reverse("admin:reviews_addressconfirmation_change", args=[confirmation.pk])
    ).content.decode()

    assert "a***@example.com" in html
    assert "ada@example.com" not in html
    assert "12 Birch Lane" not in html
