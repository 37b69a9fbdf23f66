"""Audit sampling: which applied decisions are sampled, what deciding a sample records, and how
the sampling rate follows the disagreement rate."""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from guardrails import sampling
from guardrails.models import (
    ActionType,
    AuditEntry,
    Decision,
    GuardrailSettings,
    ReviewOutcome,
    SamplingState,
    SlaBreachAction,
    Verdict,
)
from guardrails.services import decision_propose
from guardrails.tasks import sampling_rates_recompute
from orders.models import OrderEvent, OrderStatus
from reviews.models import ReviewKind, ReviewStatus
from reviews.services import review_item_accept, review_item_reject
from tests.conftest import make_user
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SUBSTITUTION,
    locations_fixture,
    order_fixture,
)


@pytest.fixture(autouse=True)
def _shipped_start_rate(default_policies):
    """Sampling starts at the shipped 10 % here; the shared fixture turns it off elsewhere."""
    settings_set(audit_sample_start_rate=Decimal("0.10"), audit_sample_floor_rate=Decimal("0.01"))


def settings_set(**values) -> GuardrailSettings:
    GuardrailSettings.objects.filter(pk=1).update(**values)
    return GuardrailSettings.objects.get(pk=1)


def propose_substitution(order, confidence: str = "0.95") -> Decision:
    """A substitution under USD 25 at a confidence over 0.92: applied autonomously."""
    return decision_propose(
        order_id=order.pk,
        action_code="substitute_sku",
        before=SUBSTITUTION[0],
        after=SUBSTITUTION[1],
        confidence=confidence,
        model_name="gpt-sub",
        model_version="2024-06",
        rationale="Same tee in white.",
    )


def reviewed_decisions(order, *, agreed: int, disagreed: int, reviewed_at=None) -> None:
    """Store decisions of substitute_sku with a review outcome, as the review service sets it."""
    action = ActionType.objects.get(code="substitute_sku")
    outcomes = [ReviewOutcome.AGREED] * agreed + [ReviewOutcome.DISAGREED] * disagreed
    Decision.objects.bulk_create(
        Decision(
            action=action,
            order=order,
            channel=order.channel,
            model_name="gpt-sub",
            model_version="2024-06",
            before=SUBSTITUTION[0],
            after=SUBSTITUTION[1],
            confidence=Decimal("0.95"),
            verdict=Verdict.APPLIED,
            facts={},
            review_outcome=outcome,
            reviewed_at=reviewed_at or timezone.now(),
        )
        for outcome in outcomes
    )


@pytest.fixture(name="cs_agent")
def cs_agent_fixture(db) -> User:
    """The approver role of the shipped substitution policy."""
    return make_user("casey", "cs_agent")


@pytest.fixture(name="sample")
def sample_fixture(order, django_capture_on_commit_callbacks):
    """An applied substitution that was sampled for audit (start rate 100 %)."""
    settings_set(audit_sample_start_rate=Decimal("1"))
    with django_capture_on_commit_callbacks(execute=True):
        decision = propose_substitution(order)
    decision.refresh_from_db()
    return decision


# --- Sampling -------------------------------------------------------------------------------


def test_applied_decision_sampled_at_rate_one(sample, order):
    item = sample.review_item

    assert sample.verdict == Verdict.APPLIED
    assert sample.applied_at is not None
    assert item.kind == ReviewKind.AUDIT_SAMPLE
    assert item.status == ReviewStatus.OPEN
    assert item.reason.startswith("Sampled for audit at 100 %")
    assert item.action_code == "substitute_sku"
    assert item.confidence == Decimal("0.9500")
    assert item.approver_group == "cs_agent"
    assert item.on_sla_breach == SlaBreachAction.ESCALATE
    assert item.due_at is not None
    assert item.proposal["decision"] == sample.pk
    assert item.proposal["before"] == SUBSTITUTION[0]
    assert item.proposal["after"] == SUBSTITUTION[1]
    assert item.proposal["confidence"] == "0.9500"
    assert item.proposal["model"] == {"name": "gpt-sub", "version": "2024-06"}
    assert [reason["rule"] for reason in item.proposal["reasons"]] == [
        reason["rule"] for reason in sample.reasons
    ]


def test_sample_does_not_hold_order(sample, order):
    order.refresh_from_db()

    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []
    assert order.lines.get(position=1).sku.code == "TEE-CLASSIC-WHT-M"


def test_sampling_state_created_at_start_rate(order):
    settings_set(audit_sample_start_rate=Decimal("0.2500"))
    decision = propose_substitution(order)

    state = SamplingState.objects.get(action__code="substitute_sku")
    assert state.rate == Decimal("0.2500")
    assert decision.verdict == Verdict.APPLIED


def test_seeded_rng_rate_zero_never_samples(order):
    decision = propose_substitution(order)
    decision.review_item = None
    decision.save(update_fields=["review_item"])
    SamplingState.objects.update_or_create(action=decision.action, defaults={"rate": Decimal("0")})

    rng = random.Random(42)
    items = [sampling.audit_sample_maybe(decision, rng=rng) for _ in range(50)]

    assert items == [None] * 50


def test_seeded_rng_rate_one_samples(order):
    SamplingState.objects.create(
        action=ActionType.objects.get(code="substitute_sku"), rate=Decimal("0")
    )
    decision = propose_substitution(order)
    assert decision.review_item_id is None
    SamplingState.objects.filter(action=decision.action).update(rate=Decimal("1"))

    item = sampling.audit_sample_maybe(decision, rng=random.Random(42))

    assert item is not None
    assert item.kind == ReviewKind.AUDIT_SAMPLE
    decision.refresh_from_db()
    assert decision.review_item_id == item.pk


def test_seeded_rng_draw_decides(order):
    """At 30 %, a decision is sampled exactly when the rng's draw is under 0.30."""
    # No sampling while proposing, so only the draws below decide.
    settings_set(audit_sample_start_rate=Decimal("0"))
    decision = propose_substitution(order, confidence="0.99")
    SamplingState.objects.update_or_create(
        action=ActionType.objects.get(code="substitute_sku"), defaults={"rate": Decimal("0.3")}
    )
    expected_draws = random.Random(7)
    rng = random.Random(7)
    outcomes = []
    for _ in range(20):
        decision.review_item = None
        decision.save(update_fields=["review_item"])
        item = sampling.audit_sample_maybe(decision, rng=rng)
        outcomes.append(item is not None)
        if item is not None:
            Decision.objects.filter(pk=decision.pk).update(review_item=None)

    assert outcomes == [expected_draws.random() < 0.3 for _ in range(20)]
    assert any(outcomes)
    assert not all(outcomes)


def test_queued_decision_not_sampled(order):
    settings_set(audit_sample_start_rate=Decimal("1"))
    decision = propose_substitution(order, confidence="0.90")

    assert decision.verdict == Verdict.QUEUED_FOR_REVIEW
    assert decision.review_item.kind == ReviewKind.SUBSTITUTION
    assert sampling.audit_sample_maybe(decision, rng=random.Random(1)) is None


def test_sampling_failure_keeps_decision(order, monkeypatch):
    def broken(decision, *, rng=None):
        raise RuntimeError("sampling is broken")

    monkeypatch.setattr(sampling, "audit_sample_maybe", broken)
    decision = propose_substitution(order)

    decision.refresh_from_db()
    assert decision.verdict == Verdict.APPLIED
    assert decision.applied_at is not None
    assert decision.review_item_id is None
    order.refresh_from_db()
    assert order.lines.get(position=1).sku.code == "TEE-CLASSIC-WHT-M"


# --- Deciding a sample ----------------------------------------------------------------------


def test_accept_sample_records_agreement(
    sample, order, cs_agent, django_capture_on_commit_callbacks
):
    events_before = set(OrderEvent.objects.filter(order=order).values_list("pk", flat=True))

    with django_capture_on_commit_callbacks(execute=True):
        review_item_accept(item_id=sample.review_item_id, user=cs_agent)

    sample.refresh_from_db()
    assert sample.review_outcome == ReviewOutcome.AGREED
    assert sample.reviewed_at is not None
    assert sample.applied_at is not None
    assert sample.review_item.status == ReviewStatus.ACCEPTED
    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []
    new_kinds = set(
        OrderEvent.objects.filter(order=order)
        .exclude(pk__in=events_before)
        .values_list("kind", flat=True)
    )
    assert "ai.audit_agreed" in new_kinds
    assert "order.ready" not in new_kinds
    assert AuditEntry.objects.filter(
        action="decision.audit_agreed", target_id=str(sample.pk), actor=cs_agent
    ).exists()
    # Deciding a sample recomputes the action's rate after commit.
    assert SamplingState.objects.get(action=sample.action).computed_at is not None


def test_reject_sample_records_disagreement(sample, order, cs_agent):
    review_item_reject(item_id=sample.review_item_id, user=cs_agent, note="Wrong colour.")

    sample.refresh_from_db()
    assert sample.review_outcome == ReviewOutcome.DISAGREED
    assert sample.review_item.status == ReviewStatus.REJECTED
    # The change stays applied and the order is not held.
    assert sample.applied_at is not None
    assert sample.reverted_at is None
    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []
    assert order.lines.get(position=1).sku.code == "TEE-CLASSIC-WHT-M"
    entry = AuditEntry.objects.get(action="decision.audit_disagreed", target_id=str(sample.pk))
    assert entry.reason == "Wrong colour."


def test_sample_accept_after_order_change(sample, order, cs_agent):
    """An audit judges the decision as made: a later order change does not make it stale."""
    from orders.services import order_version_bump

    order_version_bump(order, reason="a later channel update")

    review_item_accept(item_id=sample.review_item_id, user=cs_agent)

    sample.refresh_from_db()
    assert sample.review_outcome == ReviewOutcome.AGREED


# --- Rate adaptation ------------------------------------------------------------------------


def test_rate_keeps_start_below_min_reviews(order):
    reviewed_decisions(order, agreed=49, disagreed=0)

    state = sampling.sampling_rate_recompute(action_code="substitute_sku")

    assert state.reviewed == 49
    assert state.disagreement_rate == Decimal("0")
    assert state.rate == Decimal("0.1000")
    assert not AuditEntry.objects.filter(action="sampling.rate_changed").exists()


def test_rate_goes_down_with_low_disagreement(order):
    # 1 % disagreement against a 2 % target halves the 10 % start rate.
    reviewed_decisions(order, agreed=99, disagreed=1)

    state = sampling.sampling_rate_recompute(action_code="substitute_sku")

    assert state.disagreement_rate == Decimal("0.0100")
    assert state.rate == Decimal("0.0500")
    entry = AuditEntry.objects.get(action="sampling.rate_changed")
    assert entry.target_id == "substitute_sku"
    assert entry.before == {"rate": "0.1000"}
    assert entry.after["rate"] == "0.0500"
    assert entry.after["reviewed"] == 100
    assert entry.after["disagreed"] == 1
    assert entry.reason.startswith("Audit sampling 10 % -> 5 %.")


def test_rate_never_below_floor(order):
    reviewed_decisions(order, agreed=200, disagreed=0)

    state = sampling.sampling_rate_recompute(action_code="substitute_sku")

    assert state.disagreement_rate == Decimal("0")
    assert state.rate == Decimal("0.0100")


def test_rate_goes_back_up(order):
    reviewed_decisions(order, agreed=200, disagreed=0)
    assert sampling.sampling_rate_recompute(action_code="substitute_sku").rate == Decimal("0.01")

    # 12 of 212 is 5.7 %, over the 2 % target: the start rate applies again, never more.
    reviewed_decisions(order, agreed=0, disagreed=12)
    state = sampling.sampling_rate_recompute(action_code="substitute_sku")

    assert state.rate == Decimal("0.1000")
    changes = AuditEntry.objects.filter(action="sampling.rate_changed").order_by("id")
    assert [entry.after["rate"] for entry in changes] == ["0.0100", "0.1000"]


def test_rate_unchanged_is_not_audited(order):
    reviewed_decisions(order, agreed=99, disagreed=1)
    sampling.sampling_rate_recompute(action_code="substitute_sku")
    sampling.sampling_rate_recompute(action_code="substitute_sku")

    assert AuditEntry.objects.filter(action="sampling.rate_changed").count() == 1


def test_rate_counts_only_window(order):
    with time_machine.travel(timezone.now() - timedelta(days=31), tick=False):
        reviewed_decisions(order, agreed=0, disagreed=100)
    reviewed_decisions(order, agreed=100, disagreed=0)

    state = sampling.sampling_rate_recompute(action_code="substitute_sku")

    assert state.reviewed == 100
    assert state.rate == Decimal("0.0100")


def test_rate_follows_settings(order):
    settings_set(
        audit_sample_start_rate=Decimal("0.2"),
        audit_sample_floor_rate=Decimal("0.05"),
        audit_sample_target_disagreement=Decimal("0.04"),
        audit_sample_min_reviews=10,
    )
    reviewed_decisions(order, agreed=9, disagreed=1)
    # 10 % disagreement is over the 4 % target: the start rate.
    assert sampling.sampling_rate_recompute(action_code="substitute_sku").rate == Decimal("0.2")

    reviewed_decisions(order, agreed=90, disagreed=0)
    # 1 of 100 is 1 %: 0.2 * 0.01 / 0.04 = 0.05, which is the floor too.
    assert sampling.sampling_rate_recompute(action_code="substitute_sku").rate == Decimal("0.05")


def test_periodic_task_recomputes_every_action(default_policies):
    count = sampling_rates_recompute.delay().get()

    active = ActionType.objects.filter(is_active=True).count()
    assert count == active
    assert SamplingState.objects.filter(computed_at__isnull=False).count() == active


# --- Admin ------------------------------------------------------------------------------------


@pytest.fixture(name="admin_client_su")
def admin_client_su_fixture(client, default_policies):
    user = User.objects.create_superuser("root", password="pw-root")
    client.force_login(user)
    return client


def test_admin_recompute_now(admin_client_su, order):
    reviewed_decisions(order, agreed=99, disagreed=1)
    state = SamplingState.objects.create(
        action=ActionType.objects.get(code="substitute_sku"), rate=Decimal("0.1")
    )
    url = reverse("admin:guardrails_samplingstate_changelist")

    page = admin_client_su.get(url)
    response = admin_client_su.post(
        url, {"action": "recompute_now", "_selected_action": [state.pk]}, follow=True
    )

    assert page.status_code == 200
    assert response.status_code == 200
    assert "Recomputed 1 sampling rates." in response.content.decode()
    state.refresh_from_db()
    assert state.rate == Decimal("0.0500")


def test_admin_settings_show_sampling_fields(admin_client_su):
    url = reverse("admin:guardrails_guardrailsettings_change", args=[1])

    html = admin_client_su.get(url).content.decode()

    for name in (
        "audit_sample_start_rate",
        "audit_sample_floor_rate",
        "audit_sample_target_disagreement",
        "audit_sample_min_reviews",
        "disagreement_window_days",
        "address_confirmation_hours",
    ):
        assert f'name="{name}"' in html, name
