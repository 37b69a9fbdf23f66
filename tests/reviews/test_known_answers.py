"""Known-answer items: the personal-data scrub, making cases, seeding them into queues, deciding
them without touching any order, and keeping them out of SLAs, KPIs and disagreement rates."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from guardrails.disagreement import disagreement_rate_overall
from guardrails.models import AuditEntry, Decision, GuardrailSettings, ReviewOutcome
from guardrails.sampling import sampling_rate_recompute
from monitoring.models import Granularity, KpiRollup
from monitoring.rollups import kpi_rollups_refresh
from orders.models import Order, OrderEvent
from reviews import known_answers
from reviews.known_answers import (
    known_answer_from_item,
    known_answer_scrub,
    known_answer_seed_maybe,
    postcode_prefix,
)
from reviews.models import KnownAnswer, ReviewItem, ReviewKind, ReviewStatus
from reviews.selectors import review_item_context
from reviews.services import (
    ReviewError,
    ReviewForbidden,
    review_item_accept,
    review_item_reject,
    review_item_revise,
)
from reviews.sla import review_items_escalate_overdue, review_items_sla_sweep
from tests.conftest import make_user
from tests.guardrails.conftest import make_staff_user
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SHIPPING_ADDRESS,
    SUBSTITUTION,
    locations_fixture,
    order_fixture,
    stock_set,
)
from tests.reviews.conftest import GOOD_ADDRESS, propose

HTMX = {"HX-Request": "true"}
PERSONAL = ("Ada", "Quill", "Birch", "Austin", "ada@example.com", "78701", "94105")


class Draws:
    """Stands in for `random`: returns the given draws in turn."""

    def __init__(self, *draws: float) -> None:
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


def rate_set(rate: str) -> None:
    GuardrailSettings.objects.update_or_create(pk=1, defaults={"known_answer_rate": Decimal(rate)})


def substitution_item(order: Order, confidence: str = "0.90") -> ReviewItem:
    """A substitution below the 0.92 confidence limit: queued for a cs_agent."""
    decision = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal(confidence))
    return ReviewItem.objects.get(pk=decision.review_item_id)


def case_of(kind: str = ReviewKind.SUBSTITUTION, expected: str = "reject", **fields) -> KnownAnswer:
    """A case as known_answer_from_item would store it, made directly."""
    defaults = {
        "kind": kind,
        "reason": "Substitute SKU proposed by gpt-sub: Confidence 0.90 is not above 0.92.",
        "source_data": {"before": SUBSTITUTION[0], "order": {"currency": "USD", "total": "24.99"}},
        "proposal": {
            "decision": 1,
            "action": "substitute_sku",
            "before": SUBSTITUTION[0],
            "after": {"line": 1, "sku": "MUG-ENAMEL-NVY-OS"},
            "confidence": "0.9000",
            "model": {"name": "gpt-sub", "version": "2024-06"},
            "reasons": [],
        },
        "action_code": "substitute_sku",
        "confidence": Decimal("0.9000"),
        "expected": expected,
        "explanation": "A mug is no substitute for a T-shirt.",
    }
    return KnownAnswer.objects.create(**(defaults | fields))


@pytest.fixture
def manager(db) -> User:
    return make_user("morgan", "cs_manager")


@pytest.fixture
def seeded(order, agent) -> tuple[ReviewItem, ReviewItem]:
    """A real substitution item and a known-answer item seeded beside it (expected: reject)."""
    case_of()
    real = substitution_item(order)
    rate_set("0.5")
    return real, known_answer_seed_maybe(real, rng=Draws(0.1, 0.0))


# --- Scrubbing personal data -------------------------------------------------------------------


def test_scrub_address_record():
    _, source, _ = known_answer_scrub(
        reason="", source_data={"shipping_address": SHIPPING_ADDRESS}, proposal={}
    )

    assert source["shipping_address"] == {
        "name": "[name 1]",
        "address1": "[street 1]",
        "city": "[city 1]",
        "province_code": "TX",
        "zip": "787**",
        "country_code": "US",
    }


def test_scrub_numbers_distinct_values():
    proposal = {
        "before": {"shipping_address": SHIPPING_ADDRESS},
        "after": {"shipping_address": GOOD_ADDRESS},
    }

    _, _, scrubbed = known_answer_scrub(reason="", source_data={}, proposal=proposal)

    before = scrubbed["before"]["shipping_address"]
    after = scrubbed["after"]["shipping_address"]
    # Same value, same placeholder; a changed street line shows as another number.
    assert before["name"] == after["name"] == "[name 1]"
    assert before["address1"] == "[street 1]"
    assert after["address1"] == "[street 2]"


def test_scrub_free_text_and_contacts():
    reason, source, proposal = known_answer_scrub(
        reason="Ada Quill at 12 Birch Lane asked by mail (ada@example.com, +1 512 555 0147).",
        source_data={
            "customer": {"id": 7012345678901, "first_name": "Ada", "email": "ada@example.com"},
            "shipping_address": SHIPPING_ADDRESS,
        },
        proposal={"rationale": "Call 512-555-0147 first.", "email": "ada@example.com"},
    )

    assert reason == "[name 1] at [street 1] asked by mail ([customer 3], [phone 1])."
    assert source["customer"] == {
        "id": "[customer 1]",
        "first_name": "[customer 2]",
        "email": "[customer 3]",
    }
    assert proposal["rationale"] == "Call [phone 2] first."
    assert proposal["email"] == "[customer 3]"


def test_scrub_comparison_rows():
    rows = [
        {
            "field": "address1",
            "received": "12 Birch Lane",
            "suggested": "12 Birch Ln",
            "changed": True,
        },
        {"field": "zip", "received": "94105", "suggested": "78701", "changed": True},
        {"field": "country_code", "received": "US", "suggested": "US", "changed": False},
    ]

    reason, _, proposal = known_answer_scrub(
        reason="Postcode 94105 is not in TX.", source_data={}, proposal={"comparison": rows}
    )

    assert [row["received"] for row in proposal["comparison"]] == ["[street 1]", "941**", "US"]
    assert [row["suggested"] for row in proposal["comparison"]] == ["[street 2]", "787**", "US"]
    assert reason == "Postcode 941** is not in TX."


def test_scrub_keeps_what_is_not_personal():
    proposal = {
        "model": {"name": "gpt-sub", "version": "2024-06"},
        "after": {"line": 1, "sku": "TEE-CLASSIC-WHT-M"},
        "reasons": [{"rule": "band", "data": {"name": "Priority customers"}}],
        "created_at": "2024-11-04T10:15:33-05:00",
    }

    _, _, scrubbed = known_answer_scrub(reason="", source_data={}, proposal=proposal)

    assert scrubbed == proposal


def test_scrub_drops_original_record_ids():
    source_data = {
        "before": {"line": 1, "sku": "TEE-CLASSIC-BLK-M"},
        "order": {
            "id": 4711,
            "status": "on_hold",
            "currency": "USD",
            "total": "24.990",
            "customer_tier": "standard",
            "order_number": "#1042",
            "channel_order_id": "5837219471390",
        },
    }
    proposal = {
        "decision": 815,
        "action": "substitute_sku",
        "after": {"line": 1, "sku": "MUG-ENAMEL-NVY-OS"},
        "reasons": [
            {
                "rule": "band",
                "outcome": "fail",
                "data": {"review_item": 12, "order_id": "4711", "decision": 815, "rate": 3},
            }
        ],
    }

    _, source, scrubbed = known_answer_scrub(reason="", source_data=source_data, proposal=proposal)

    assert source == {
        "before": {"line": 1, "sku": "TEE-CLASSIC-BLK-M"},
        "order": {
            "status": "on_hold",
            "currency": "USD",
            "total": "24.99",
            "customer_tier": "standard",
        },
    }
    assert scrubbed == {
        "decision": True,
        "action": "substitute_sku",
        "after": {"line": 1, "sku": "MUG-ENAMEL-NVY-OS"},
        "reasons": [{"rule": "band", "outcome": "fail", "data": {"rate": 3}}],
    }


def test_scrub_without_decision_adds_none():
    _, _, scrubbed = known_answer_scrub(
        reason="", source_data={}, proposal={"score": "0.4", "comparison": []}
    )

    assert scrubbed == {"score": "0.4", "comparison": []}


def test_postcode_prefix():
    assert postcode_prefix("78701") == "787**"
    assert postcode_prefix("SW1A 1AA") == "SW1**"


# --- Making a case from a decided item ---------------------------------------------------------


def test_case_from_rejected_substitution(order, agent, manager):
    item = substitution_item(order)
    review_item_reject(item_id=item.pk, user=agent)

    case = known_answer_from_item(
        review_item_id=item.pk, user=manager, explanation="  A mug for a tee is wrong.  "
    )

    assert case.kind == ReviewKind.SUBSTITUTION
    assert case.expected == "reject"
    assert case.explanation == "A mug for a tee is wrong."
    assert case.action_code == "substitute_sku"
    assert case.confidence == Decimal("0.9000")
    assert case.proposal["after"] == SUBSTITUTION[1]
    assert case.source_item == item
    assert case.is_active
    assert AuditEntry.objects.filter(action="known_answer.created", target_id=str(case.pk)).exists()


def test_case_from_address_has_no_personal_data(address_item, manager):
    review_item_accept(item_id=address_item.pk, user=manager)

    case = known_answer_from_item(
        review_item_id=address_item.pk, user=manager, explanation="The ZIP belongs to CA."
    )

    stored = json.dumps([case.reason, case.source_data, case.proposal])
    for value in PERSONAL:
        assert value not in stored, value
    assert case.expected == "accept"
    assert case.source_data["shipping_address"]["zip"] == "941**"
    assert case.source_data["shipping_address"]["country_code"] == "US"


def test_case_from_revised_item_expects_reject(order, locations, agent, manager):
    stock_set("MUG-ENAMEL-NVY-OS", locations["wh-east"], 5)
    item = substitution_item(order)
    review_item_revise(item_id=item.pk, user=agent, revision={"sku": "MUG-ENAMEL-NVY-OS"})
    item.refresh_from_db()
    assert item.status == ReviewStatus.ACCEPTED

    case = known_answer_from_item(review_item_id=item.pk, user=manager, explanation="Revised.")

    assert case.expected == "reject"


def test_case_copy_points_at_no_original(order, agent, manager):
    item = substitution_item(order)
    review_item_reject(item_id=item.pk, user=agent)

    case = known_answer_from_item(review_item_id=item.pk, user=manager, explanation="Wrong.")

    assert case.proposal["decision"] is True
    assert item.proposal["decision"] == item.ai_decision.pk
    assert "id" not in case.source_data["order"]
    assert case.source_data["order"]["total"] == "24.99"
    assert case.source_data["order"]["currency"] == "USD"


def test_case_expected_given_explicitly(order, agent, manager):
    item = substitution_item(order)
    review_item_reject(item_id=item.pk, user=agent)

    case = known_answer_from_item(
        review_item_id=item.pk, user=manager, expected="accept", explanation="It was fine."
    )

    assert case.expected == "accept"


@pytest.mark.parametrize(
    "expected,explanation,code,field",
    [
        ("maybe", "Why.", "invalid_expected", "expected"),
        (None, "   ", "explanation_missing", "explanation"),
    ],
)
def test_case_input_errors(order, agent, manager, expected, explanation, code, field):
    item = substitution_item(order)
    review_item_reject(item_id=item.pk, user=agent)

    with pytest.raises(ReviewError) as raised:
        known_answer_from_item(
            review_item_id=item.pk, user=manager, expected=expected, explanation=explanation
        )

    assert raised.value.code == code
    assert raised.value.field == field


def test_case_refused_for_open_item(order, manager):
    item = substitution_item(order)

    with pytest.raises(ReviewError) as raised:
        known_answer_from_item(review_item_id=item.pk, user=manager, explanation="Why.")

    assert raised.value.code == "not_decided"
    assert f"Review item #{item.pk} is open" in raised.value.message


def test_case_refused_for_hygiene_kind(order, manager):
    item = ReviewItem.objects.create(
        kind=ReviewKind.UNMAPPED_SKU,
        order=order,
        reason="No mapping.",
        source_data={},
        proposal={"candidates": [{"sku_id": 1}]},
        status=ReviewStatus.REJECTED,
        decided_by=manager,
        decided_at=timezone.now(),
    )

    with pytest.raises(ReviewError) as raised:
        known_answer_from_item(review_item_id=item.pk, user=manager, explanation="Why.")

    assert raised.value.code == "unsupported_kind"


def test_case_refused_for_unknown_item(manager):
    with pytest.raises(ReviewError) as raised:
        known_answer_from_item(review_item_id=987654, user=manager, explanation="Why.")

    assert raised.value.code == "not_found"
    assert raised.value.status == 404


def test_case_needs_add_permission(order, agent):
    item = substitution_item(order)
    review_item_reject(item_id=item.pk, user=agent)

    with pytest.raises(ReviewForbidden):
        known_answer_from_item(review_item_id=item.pk, user=agent, explanation="Why.")

    assert not KnownAnswer.objects.exists()


# --- Seeding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("draw,seeds", [(0.4, True), (0.6, False)])
def test_seed_follows_rate(order, draw, seeds):
    case_of()
    real = substitution_item(order)
    rate_set("0.5")

    seeded = known_answer_seed_maybe(real, rng=Draws(draw, 0.0))

    assert (seeded is not None) is seeds
    assert ReviewItem.objects.filter(known_answer__isnull=False).count() == int(seeds)


def test_seed_rate_zero_never_seeds(order):
    case_of()
    real = substitution_item(order)
    rate_set("0")

    assert known_answer_seed_maybe(real, rng=Draws(0.0, 0.0)) is None


def test_seeded_item_shape(seeded):
    real, item = seeded
    case = KnownAnswer.objects.get()

    assert item.order is None
    assert item.order_line is None
    assert item.kind == real.kind == ReviewKind.SUBSTITUTION
    assert item.known_answer == case
    assert item.known_answer_correct is None
    assert item.status == ReviewStatus.OPEN
    assert (item.reason, item.source_data, item.proposal) == (
        case.reason,
        case.source_data,
        case.proposal,
    )
    assert (item.action_code, item.confidence) == ("substitute_sku", Decimal("0.9000"))
    # Routed like the real item: same approver, deadline rule and length.
    assert item.approver_group == real.approver_group == "cs_agent"
    assert (item.sla_minutes, item.on_sla_breach) == (real.sla_minutes, real.on_sla_breach)
    opened_for = item.due_at - item.created_at
    assert abs(opened_for - timedelta(minutes=item.sla_minutes)) < timedelta(seconds=1)


def test_seed_picks_case_of_same_kind(order):
    case_of(kind=ReviewKind.ADDRESS, action_code="")
    wanted = case_of()
    case_of(is_active=False)
    real = substitution_item(order)
    rate_set("1")

    seeded = known_answer_seed_maybe(real, rng=Draws(0.0, 0.99))

    assert seeded.known_answer == wanted


def test_seed_needs_active_case(order):
    case_of(is_active=False)
    real = substitution_item(order)
    rate_set("1")

    assert known_answer_seed_maybe(real, rng=Draws(0.0, 0.0)) is None


def test_known_answer_item_never_seeds(seeded):
    _, item = seeded

    assert known_answer_seed_maybe(item, rng=Draws(0.0, 0.0)) is None


def test_seed_on_item_open(order):
    """Opening a real item seeds through the post-save hook at rate 1."""
    case_of()
    rate_set("1")

    real = substitution_item(order)

    seeded = ReviewItem.objects.get(known_answer__isnull=False)
    assert seeded.kind == real.kind
    assert ReviewItem.objects.count() == 2
    assert AuditEntry.objects.filter(
        action="review_item.known_answer_seeded", target_id=str(seeded.pk)
    ).exists()


def test_unseeded_item_open_has_no_savepoint(order):
    """A queued decision skipped by the draw pays for no empty SAVEPOINT and RELEASE."""
    case_of()
    rate_set("0")

    with CaptureQueriesContext(connection) as queries:
        substitution_item(order)

    assert ReviewItem.objects.count() == 1
    statements = [query["sql"] for query in queries.captured_queries]
    opened = next(
        index
        for index, sql in enumerate(statements)
        if sql.startswith('INSERT INTO "reviews_reviewitem"')
    )
    assert "SAVEPOINT" not in statements[opened + 1], statements[opened:]


def test_seed_failure_keeps_real_item(order, monkeypatch, caplog):
    case_of()
    rate_set("1")

    def broken(case, *, beside):
        raise RuntimeError("seeding broke")

    monkeypatch.setattr(known_answers, "_seeded_item_create", broken)

    real = substitution_item(order)

    assert ReviewItem.objects.get() == real
    assert Decision.objects.get().review_item == real
    assert "known-answer seeding failed" in caplog.text


# --- Deciding a known-answer item --------------------------------------------------------------


def order_state(order: Order) -> tuple:
    order.refresh_from_db()
    return order.version, order.status, order.hold_reasons, OrderEvent.objects.count()


@pytest.mark.parametrize(
    "decide,status,correct",
    [
        (lambda item, user: review_item_accept(item_id=item.pk, user=user), "accepted", False),
        (lambda item, user: review_item_reject(item_id=item.pk, user=user), "rejected", True),
        (
            lambda item, user: review_item_revise(
                item_id=item.pk, user=user, revision={"sku": "TEE-CLASSIC-WHT-M"}
            ),
            "accepted",
            True,
        ),
    ],
    ids=["accept", "reject", "revise"],
)
def test_decide_records_correctness(seeded, order, agent, decide, status, correct):
    real, item = seeded
    before = order_state(order)

    decide(item, agent)

    item.refresh_from_db()
    assert item.status == status
    assert item.known_answer_correct is correct
    assert item.decided_by == agent
    assert order_state(order) == before
    # The real item and its decision are untouched.
    real.refresh_from_db()
    assert real.status == ReviewStatus.OPEN
    assert Decision.objects.get().review_outcome == ""
    assert (
        AuditEntry.objects.filter(target_type="review_item", target_id=str(item.pk))
        .filter(action=f"review_item.{status}")
        .exists()
    )


def test_decide_revise_stores_revision(seeded, agent):
    _, item = seeded

    review_item_revise(item_id=item.pk, user=agent, revision={"sku": "TEE-CLASSIC-WHT-M"})

    item.refresh_from_db()
    assert item.revision == {"sku": "TEE-CLASSIC-WHT-M"}
    assert item.decision["answer"] == "revise"
    assert item.decision["expected"] == "reject"


def test_decide_needs_approver_role(seeded):
    _, item = seeded
    outsider = make_user("mallory", None)

    with pytest.raises(ReviewForbidden):
        review_item_accept(item_id=item.pk, user=outsider)

    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN
    assert item.known_answer_correct is None


def test_decide_rejects_foreign_choice(seeded, agent):
    _, item = seeded

    with pytest.raises(ReviewError) as raised:
        review_item_accept(item_id=item.pk, user=agent, sku_id=1)

    assert raised.value.code == "invalid_choice"


def test_decided_card_shows_known_answer(seeded, agent):
    _, item = seeded
    client = Client()
    client.force_login(agent)

    response = client.post(reverse("reviews:accept", args=[item.pk]), headers=HTMX)

    assert response.status_code == 200
    text = response.content.decode()
    assert (
        "Known-answer check: you answered accept, the known answer is reject, because "
        "A mug is no substitute for a T-shirt." in text
    )
    assert 'data-correct="false"' in text


def test_decided_card_revise_counts_as_reject(seeded, agent):
    _, item = seeded
    client = Client()
    client.force_login(agent)

    response = client.post(
        reverse("reviews:revise", args=[item.pk]), {"sku": "TEE-CLASSIC-WHT-M"}, headers=HTMX
    )

    assert response.status_code == 200
    assert "you answered revise, which counts as reject, the known answer is reject" in (
        response.content.decode()
    )


# --- Queue pages with items that have no order ------------------------------------------------


def test_queue_pages_render_known_answer_items(seeded, agent):
    real, item = seeded
    client = Client()
    client.force_login(agent)

    for url in (
        reverse("reviews:queue"),
        reverse("reviews:queue_kind", args=["all"]),
        reverse("reviews:queue_kind", args=[ReviewKind.SUBSTITUTION]),
        reverse("reviews:item", args=[item.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert f'data-item="{item.pk}"' in response.content.decode(), url

    review_item_reject(item_id=item.pk, user=agent)
    decided = client.get(reverse("reviews:item", args=[item.pk]))
    assert decided.status_code == 200
    assert "Known-answer check: you answered reject" in decided.content.decode()


def test_queue_page_queries_flat_with_known_answers(seeded, agent, django_assert_max_num_queries):
    real, _ = seeded
    client = Client()
    client.force_login(agent)
    url = reverse("reviews:queue_kind", args=["all"])
    client.get(url)

    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for _ in range(10):
        known_answer_seed_maybe(real, rng=Draws(0.0, 0.0))

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(url)
    assert response.content.decode().count("Open item #") == 12


def test_similar_outcomes_skip_known_answers(seeded, agent):
    real, item = seeded
    review_item_reject(item_id=item.pk, user=agent)

    context = review_item_context(item=real)

    assert context.similar.total == 0


# --- Kept out of service levels, KPIs, disagreement and sampling --------------------------------


def test_sla_sweep_skips_known_answer_items(seeded):
    real, item = seeded
    later = timezone.now() + timedelta(days=1)

    breached = review_items_sla_sweep(now=later)

    assert breached == [real.pk]
    item.refresh_from_db()
    assert item.sla_breached_at is None
    assert item.escalated_to == ""


def test_escalate_overdue_skips_known_answer_items(seeded):
    real, item = seeded
    ops = make_user("olivia", "ops_manager")

    count = review_items_escalate_overdue(
        kind=ReviewKind.SUBSTITUTION, older_than=timedelta(0), user=ops
    )

    assert count == 1
    item.refresh_from_db()
    assert item.escalated_at is None


def test_kpis_skip_known_answer_items(seeded, agent):
    real, item = seeded
    review_item_reject(item_id=item.pk, user=agent)
    case_of()
    open_item = known_answer_seed_maybe(real, rng=Draws(0.0, 0.0))
    review_item_reject(item_id=real.pk, user=agent)
    now = timezone.now()

    kpi_rollups_refresh(since=now - timedelta(hours=1), until=now + timedelta(hours=1), now=now)

    hour = KpiRollup.objects.filter(granularity=Granularity.HOUR)
    assert ReviewItem.objects.get(pk=open_item.pk).is_open
    assert hour.get(counter="queue_open", dimension=ReviewKind.SUBSTITUTION).count == 0
    assert sum(hour.filter(counter="review_decided").values_list("count", flat=True)) == 1


def test_disagreement_and_sampling_skip_known_answers(seeded, agent):
    _, item = seeded

    review_item_reject(item_id=item.pk, user=agent)

    assert disagreement_rate_overall().reviewed == 0
    assert sampling_rate_recompute(action_code="substitute_sku").reviewed == 0
    assert not Decision.objects.filter(review_outcome=ReviewOutcome.DISAGREED).exists()


# --- Admin ------------------------------------------------------------------------------------


@pytest.fixture
def decided_item(order, agent) -> ReviewItem:
    item = substitution_item(order)
    return review_item_reject(item_id=item.pk, user=agent)


def test_admin_add_from_item(decided_item):
    client = Client()
    client.force_login(make_staff_user("morgan", "cs_manager"))

    response = client.post(
        reverse("admin:reviews_knownanswer_add"),
        {"review_item": decided_item.pk, "expected_answer": "", "explanation": "Wrong SKU."},
    )

    assert response.status_code == 302
    case = KnownAnswer.objects.get()
    assert case.source_item == decided_item
    assert case.expected == "reject"
    listing = client.get(reverse("admin:reviews_knownanswer_changelist"))
    assert listing.status_code == 200


def test_admin_add_refuses_open_item(order):
    item = substitution_item(order)
    client = Client()
    client.force_login(make_staff_user("morgan", "cs_manager"))

    response = client.post(
        reverse("admin:reviews_knownanswer_add"),
        {"review_item": item.pk, "expected_answer": "", "explanation": "Why."},
    )

    assert response.status_code == 200
    assert "only an item a person accepted, revised or rejected" in response.content.decode()
    assert not KnownAnswer.objects.exists()


def test_admin_deactivate_action(seeded):
    case = KnownAnswer.objects.get()
    ops = make_staff_user("olivia", "ops_manager")
    client = Client()
    client.force_login(ops)

    response = client.post(
        reverse("admin:reviews_knownanswer_changelist"),
        {"action": "deactivate", "_selected_action": [case.pk]},
    )

    assert response.status_code == 302
    case.refresh_from_db()
    assert not case.is_active
    assert AuditEntry.objects.filter(action="known_answer.deactivated", actor=ops).exists()


def test_admin_change_needs_change_permission(seeded):
    case = KnownAnswer.objects.get()
    client = Client()
    client.force_login(make_staff_user("morgan", "cs_manager"))

    client.post(
        reverse("admin:reviews_knownanswer_changelist"),
        {"action": "deactivate", "_selected_action": [case.pk]},
    )

    case.refresh_from_db()
    assert case.is_active


# --- The review-items API with known-answer items ---------------------------------------------


def api_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_list_and_detail_known_answer_item(seeded, agent):
    real, item = seeded
    client = api_for(agent)

    listed = client.get("/api/v1/review-items/")
    detail = client.get(f"/api/v1/review-items/{item.pk}/")

    assert listed.status_code == 200
    rows = {row["id"]: row for row in listed.json()["results"]}
    assert rows[real.pk]["channel"] == "shop"
    assert detail.status_code == 200
    for row in (rows[item.pk], detail.json()):
        assert row["order"] is None
        assert row["delivery"] is None
        assert row["order_number"] is None
        assert row["channel"] is None
        assert "known_answer" not in row


def test_api_channel_copied_from_case(order, agent):
    case_of(source_data={"order": {"channel": "shop", "currency": "USD", "total": "24.99"}})
    real = substitution_item(order)
    rate_set("1")
    item = known_answer_seed_maybe(real, rng=Draws(0.0, 0.0))
    client = api_for(agent)

    detail = client.get(f"/api/v1/review-items/{item.pk}/")
    filtered = client.get("/api/v1/review-items/", {"channel": "shop"})

    assert detail.json()["channel"] == "shop"
    assert {row["id"] for row in filtered.json()["results"]} == {real.pk, item.pk}


@pytest.mark.parametrize(
    "action,status,correct",
    [("claim", "open", None), ("accept", "accepted", False), ("reject", "rejected", True)],
)
def test_api_actions_on_known_answer_item(seeded, agent, action, status, correct):
    _, item = seeded

    response = api_for(agent).post(f"/api/v1/review-items/{item.pk}/{action}/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["status"], body["channel"]) == (item.pk, status, None)
    item.refresh_from_db()
    assert item.status == status
    assert item.known_answer_correct is correct


# --- The queue card of a known-answer item ----------------------------------------------------


def test_card_header_like_real_item(order, agent, manager):
    made_from = substitution_item(order)
    review_item_reject(item_id=made_from.pk, user=agent)
    known_answer_from_item(review_item_id=made_from.pk, user=manager, explanation="Wrong SKU.")
    real = substitution_item(order)
    rate_set("1")
    item = known_answer_seed_maybe(real, rng=Draws(0.0, 0.0))
    client = Client()
    client.force_login(agent)

    page = client.get(reverse("reviews:item", args=[item.pk])).content.decode()

    card = page[page.index(f'id="item-{item.pk}"') :]
    header = card[: card.index("</header>")]
    assert "24.99 USD · opened" in header
    assert "Order" not in header
    assert "decision #" not in card
    assert "Ship <code>TEE-CLASSIC-WHT-M</code> instead of <code>TEE-CLASSIC-BLK-M</code>" in card
    assert "on line 1." in card
    assert 'data-action="revise"' in card


def test_card_header_shows_copied_channel(order, agent):
    case_of(source_data={"order": {"channel": "shop", "currency": "USD", "total": "24.99"}})
    real = substitution_item(order)
    rate_set("1")
    item = known_answer_seed_maybe(real, rng=Draws(0.0, 0.0))
    client = Client()
    client.force_login(agent)

    page = client.get(reverse("reviews:item", args=[item.pk])).content.decode()

    card = page[page.index(f'id="item-{item.pk}"') :]
    assert "shop · 24.99 USD · opened" in card[: card.index("</header>")]
