"""Shadow versions: a draft judged beside the live version, with disagreements recorded."""

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from guardrails.backtest import (
    BacktestError,
    shadow_disagreements,
    shadow_evaluate,
    shadow_start,
    shadow_stop,
)
from guardrails.models import AuditEntry, Policy, ShadowEvaluation, Verdict
from guardrails.services import decision_propose

from .backtest_fixtures import (
    decision_record,
    live_version,
    order_create,
    substitution_facts,
    version_copy,
)


@pytest.fixture
def draft_under_20(default_policies):
    return version_copy(live_version("substitute_sku"), item_price_under=Decimal("20"))


@pytest.fixture
def record(default_policies, channel):
    numbers = iter(range(1000))

    def record_one(item_price: str):
        order = order_create(channel, next(numbers))
        return decision_record(order=order, facts=substitution_facts(order, item_price=item_price))

    return record_one


def test_shadow_agrees_on_same_verdict(record, draft_under_20):
    decision = record("12.50")

    shadow = shadow_evaluate(decision, draft_under_20)

    assert decision.verdict == Verdict.APPLIED
    assert shadow.verdict == Verdict.APPLIED
    assert shadow.agrees is True
    assert shadow.policy_version == draft_under_20


def test_shadow_disagrees_inside_new_limit(record, draft_under_20):
    decision = record("22.00")

    shadow = shadow_evaluate(decision, draft_under_20)

    assert decision.verdict == Verdict.APPLIED
    assert shadow.verdict == Verdict.QUEUED_FOR_REVIEW
    assert shadow.agrees is False
    failed = [reason["rule"] for reason in shadow.reasons if reason["outcome"] == "fail"]
    assert failed == ["item_price"]


def test_shadow_disagreements_summary(record, draft_under_20):
    for price in ["5.00", "19.99", "20.00", "22.00", "24.99", "30.00"]:
        shadow_evaluate(record(price), draft_under_20)

    summary = shadow_disagreements(draft_under_20, days=30)

    assert summary["evaluated"] == 6
    assert summary["agree"] == 3
    assert summary["disagree"] == 3
    assert summary["by_transition"] == {"applied -> queued_for_review": 3}


def test_shadow_disagreements_window(record, draft_under_20):
    shadow = shadow_evaluate(record("22.00"), draft_under_20)
    ShadowEvaluation.objects.filter(pk=shadow.pk).update(
        created_at=timezone.now() - timezone.timedelta(days=10)
    )

    assert shadow_disagreements(draft_under_20, days=7)["evaluated"] == 0
    assert shadow_disagreements(draft_under_20, days=30)["disagree"] == 1


def test_shadow_start_sets_policy_and_audits(draft_under_20, ops):
    policy = shadow_start(version=draft_under_20, user=ops)

    assert Policy.objects.get(pk=policy.pk).shadow_version == draft_under_20
    entry = AuditEntry.objects.get(action="policy.shadow_start")
    assert entry.actor == ops
    assert entry.after == {"shadow_version": draft_under_20.pk}


def test_shadow_start_rejects_published_version(default_policies, ops):
    live = live_version("substitute_sku")

    with pytest.raises(BacktestError, match="Only a draft version can run in shadow"):
        shadow_start(version=live, user=ops)

    assert Policy.objects.get(pk=live.policy_id).shadow_version is None


def test_shadow_stop_clears_and_audits(draft_under_20, ops):
    policy = shadow_start(version=draft_under_20, user=ops)

    shadow_stop(policy=policy, user=ops)

    assert Policy.objects.get(pk=policy.pk).shadow_version is None
    entry = AuditEntry.objects.get(action="policy.shadow_stop")
    assert entry.before == {"shadow_version": draft_under_20.pk}


# --- Admin ------------------------------------------------------------------------------------


def _post_action(client, action, version):
    return client.post(
        reverse("admin:guardrails_policyversion_changelist"),
        {"action": action, "_selected_action": [version.pk]},
    )


def test_admin_run_in_shadow(client, ops, draft_under_20):
    client.force_login(ops)

    response = _post_action(client, "run_in_shadow", draft_under_20)

    assert response.status_code == 302
    assert Policy.objects.get(pk=draft_under_20.policy_id).shadow_version == draft_under_20


def test_admin_stop_shadow(client, ops, draft_under_20):
    shadow_start(version=draft_under_20, user=ops)
    client.force_login(ops)

    response = _post_action(client, "stop_shadow", draft_under_20)

    assert response.status_code == 302
    assert Policy.objects.get(pk=draft_under_20.policy_id).shadow_version is None


@pytest.mark.parametrize("action", ["run_in_shadow", "stop_shadow"])
def test_admin_shadow_forbidden_for_cs_manager(client, manager, ops, draft_under_20, action):
    if action == "stop_shadow":
        shadow_start(version=draft_under_20, user=ops)
    before = Policy.objects.get(pk=draft_under_20.policy_id).shadow_version_id
    client.force_login(manager)

    page = client.get(reverse("admin:guardrails_policyversion_changelist"))
    _post_action(client, action, draft_under_20)

    assert page.status_code == 200
    assert f'value="{action}"'.encode() not in page.content
    assert Policy.objects.get(pk=draft_under_20.policy_id).shadow_version_id == before


def test_admin_shadow_list_shows_verdicts(client, ops, record, draft_under_20):
    shadow_evaluate(record("22.00"), draft_under_20)
    shadow_evaluate(record("5.00"), draft_under_20)
    client.force_login(ops)

    url = reverse("admin:guardrails_shadowevaluation_changelist")
    response = client.get(url, {"policy_version__id__exact": draft_under_20.pk, "agrees__exact": 0})

    assert response.status_code == 200
    content = response.content.decode()
    assert "1 agree" in content
    assert "<strong>1 disagree</strong>" in content
    assert content.count('class="field-live_verdict"') == 1


def test_propose_records_shadow_evaluation(default_policies, channel, ops):
    live = live_version("select_carrier")
    draft = version_copy(live, confidence_above=Decimal("0.97"))
    shadow_start(version=draft, user=ops)
    order = order_create(channel, 1)

    decision = decision_propose(
        order_id=order.pk,
        action_code="select_carrier",
        before={"carrier_service": None},
        after={"carrier_service": "ups/ground"},
        confidence=Decimal("0.95"),
        model_name="carrier-ranker",
        model_version="3",
    )

    shadow = ShadowEvaluation.objects.get(decision=decision)
    assert decision.verdict == Verdict.APPLIED
    assert decision.policy_version_id == live.pk
    assert shadow.policy_version == draft
    assert shadow.verdict == Verdict.QUEUED_FOR_REVIEW
    assert shadow.agrees is False
