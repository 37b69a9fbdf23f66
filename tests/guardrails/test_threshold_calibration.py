"""Threshold calibration: the threshold that meets a target precision, the reliability curve from
reviewed decisions, the draft policy version it offers and the page that shows it."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalog.models import Channel, ChannelKind
from guardrails.calibration_views import reliability_chart_svg
from guardrails.forms import GuardrailSettingsForm
from guardrails.models import (
    ActionType,
    AuditEntry,
    BacktestRun,
    Decision,
    GuardrailSettings,
    Policy,
    PolicyVersion,
    ReviewOutcome,
    Verdict,
)
from guardrails.policies import policy_version_create, policy_version_publish
from guardrails.services import decision_propose
from guardrails.threshold_calibration import (
    CalibrationError,
    calibration_draft_create,
    calibration_draft_get_or_create,
    calibration_suggest,
    curve_bins,
    reliability_curve,
    threshold_for_precision,
)
from reviews.services import review_item_accept, review_item_reject
from tests.conftest import make_user
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SUBSTITUTION,
    locations_fixture,
    order_fixture,
)

D = Decimal
TARGET = D("0.98")


def pairs(*groups: tuple[str, int, int]) -> list[tuple[Decimal, bool]]:
    """(confidence, accepted count, rejected count) groups as (confidence, accepted) pairs."""
    result = []
    for confidence, accepted, rejected in groups:
        result += [(D(confidence), True)] * accepted + [(D(confidence), False)] * rejected
    return result


# --- threshold_for_precision ---------------------------------------------------------------------


def test_threshold_all_accepted():
    suggestion = threshold_for_precision(
        decisions=pairs(("0.80", 1, 0), ("0.85", 1, 0), ("0.90", 1, 0)),
        target_precision=TARGET,
        min_reviews=2,
    )

    # One step below the lowest reviewed confidence, so every reviewed decision is above it.
    assert suggestion.threshold == D("0.7999")
    assert suggestion.code == "found"
    assert (suggestion.reviewed_above, suggestion.accepted_above) == (3, 3)
    assert suggestion.precision_above == D("1.0000")


def test_threshold_none_accepted():
    suggestion = threshold_for_precision(
        decisions=pairs(("0.80", 0, 3), ("0.90", 0, 3)), target_precision=TARGET, min_reviews=2
    )

    assert suggestion.threshold is None
    assert suggestion.code == "target_not_met"
    assert suggestion.precision_above == D("0.0000")
    assert suggestion.message.startswith("No threshold reaches precision 0.98 with at least 2")


def test_threshold_exactly_at_target():
    # 49 of 50 accepted is exactly 0.98.
    decisions = pairs(("0.50", 0, 1)) + [(D("0.6") + D(n) / 1000, True) for n in range(49)]

    suggestion = threshold_for_precision(
        decisions=decisions, target_precision=TARGET, min_reviews=50
    )

    assert suggestion.threshold == D("0.4999")
    assert suggestion.precision_above == D("0.9800")
    assert suggestion.reviewed_above == 50


def test_threshold_just_below_target():
    # 48 of 50 is 0.96, and above the next candidate only 49 remain: under min_reviews.
    decisions = pairs(("0.50", 0, 2)) + [(D("0.6") + D(n) / 1000, True) for n in range(48)]

    suggestion = threshold_for_precision(
        decisions=decisions, target_precision=TARGET, min_reviews=50
    )

    assert suggestion.threshold is None
    assert suggestion.code == "target_not_met"
    assert suggestion.precision_above == D("0.9600")


def test_threshold_ties_stay_together():
    decisions = pairs(("0.80", 0, 1), ("0.90", 3, 1), ("0.95", 4, 0))

    suggestion = threshold_for_precision(
        decisions=decisions, target_precision=D("1"), min_reviews=4
    )

    # The rejection at 0.90 cannot be split from the acceptances at 0.90.
    assert suggestion.threshold == D("0.90")
    assert (suggestion.reviewed_above, suggestion.accepted_above) == (4, 4)


def test_threshold_lowest_that_qualifies():
    decisions = pairs(("0.70", 1, 1), ("0.80", 10, 0), ("0.90", 10, 0))

    suggestion = threshold_for_precision(
        decisions=decisions, target_precision=D("0.96"), min_reviews=10
    )

    # 21 of 22 above 0.6999 is 0.9545, short of 0.96; above 0.70 all 20 were accepted.
    assert suggestion.threshold == D("0.70")
    assert suggestion.reviewed_above == 20


def test_threshold_min_reviews_boundary():
    decisions = pairs(("0.70", 0, 1), ("0.90", 5, 0))

    assert threshold_for_precision(
        decisions=decisions, target_precision=TARGET, min_reviews=5
    ).threshold == D("0.70")
    assert (
        threshold_for_precision(decisions=decisions, target_precision=TARGET, min_reviews=6).code
        == "target_not_met"
    )


def test_threshold_too_little_data():
    suggestion = threshold_for_precision(
        decisions=pairs(("0.90", 3, 0)), target_precision=TARGET, min_reviews=5
    )

    assert suggestion.threshold is None
    assert suggestion.code == "too_little_data"
    assert suggestion.message == (
        "Too little data: 3 reviewed decisions, but at least 5 are needed above a threshold."
    )


def test_threshold_no_data():
    suggestion = threshold_for_precision(decisions=[], target_precision=TARGET, min_reviews=1)

    assert (suggestion.threshold, suggestion.code, suggestion.reviewed) == (
        None,
        "too_little_data",
        0,
    )


def test_threshold_all_at_zero():
    suggestion = threshold_for_precision(
        decisions=pairs(("0", 5, 0)), target_precision=TARGET, min_reviews=5
    )

    assert suggestion.threshold is None
    assert suggestion.code == "too_little_data"


@pytest.mark.parametrize(
    "target,min_reviews", [(D("0"), 1), (D("1.01"), 1), (D("0.9"), 0)], ids=str
)
def test_threshold_rejects_bad_arguments(target, min_reviews):
    with pytest.raises(ValueError):
        threshold_for_precision(decisions=[], target_precision=target, min_reviews=min_reviews)


# --- Curve bins --------------------------------------------------------------------------------


def test_curve_bins_edges():
    bins = curve_bins(pairs(("0.05", 1, 0), ("0.1", 0, 1), ("0.95", 1, 0), ("1", 0, 1)), bins=10)

    assert len(bins) == 10
    assert (bins[0].lower, bins[0].upper, bins[0].count) == (D("0.0000"), D("0.1000"), 1)
    # A lower bound belongs to its bin, and 1 to the last one.
    assert (bins[1].count, bins[1].accepted, bins[1].acceptance_rate) == (1, 0, D("0.0000"))
    assert (bins[9].count, bins[9].accepted) == (2, 1)
    assert bins[9].acceptance_rate == D("0.5000")
    assert bins[9].mean_confidence == D("0.9750")
    assert (bins[5].count, bins[5].acceptance_rate, bins[5].mean_confidence) == (0, None, None)
    assert bins[9].as_dict() == {
        "lower": "0.9000",
        "upper": "1.0000",
        "count": 2,
        "accepted": 1,
        "acceptance_rate": "0.5000",
        "mean_confidence": "0.9750",
    }


# --- From reviewed decisions ------------------------------------------------------------------


def reviewed(order, groups, *, channel=None, action="substitute_sku", when=None) -> None:
    """Store reviewed decisions: (confidence, agreed count, disagreed count) groups."""
    action = ActionType.objects.get(code=action)
    rows = []
    for confidence, agreed, disagreed in groups:
        for outcome, count in (
            (ReviewOutcome.AGREED, agreed),
            (ReviewOutcome.DISAGREED, disagreed),
        ):
            rows += [
                Decision(
                    action=action,
                    order=order,
                    channel=channel or order.channel,
                    model_name="gpt-sub",
                    model_version="2024-06",
                    before=SUBSTITUTION[0],
                    after=SUBSTITUTION[1],
                    confidence=D(confidence),
                    verdict=Verdict.QUEUED_FOR_REVIEW,
                    facts={},
                    review_outcome=outcome,
                    reviewed_at=when or timezone.now(),
                )
                for _ in range(count)
            ]
    Decision.objects.bulk_create(rows)


def settings_set(**values) -> None:
    GuardrailSettings.objects.filter(pk=1).update(**values)


@pytest.fixture
def other_channel(db) -> Channel:
    return Channel.objects.create(kind=ChannelKind.SHOPIFY, code="outlet", webhook_secret="s")


def test_curve_from_reviewed_decisions(order, other_channel):
    agent = make_user("casey", "cs_agent")
    first = decision_propose(
        order_id=order.pk,
        action_code="substitute_sku",
        before=SUBSTITUTION[0],
        after=SUBSTITUTION[1],
        confidence="0.9050",
        model_name="gpt-sub",
        model_version="2024-06",
    )
    review_item_reject(item_id=first.review_item_id, user=agent)
    second = decision_propose(
        order_id=order.pk,
        action_code="substitute_sku",
        before=SUBSTITUTION[0],
        after=SUBSTITUTION[1],
        confidence="0.9150",
        model_name="gpt-sub",
        model_version="2024-06",
    )
    review_item_accept(item_id=second.review_item_id, user=agent)
    reviewed(order, [("0.95", 3, 1)])
    reviewed(order, [("0.95", 5, 0)], channel=other_channel)
    reviewed(order, [("0.95", 0, 7)], action="select_carrier")
    reviewed(order, [("0.95", 0, 9)], when=timezone.now() - timedelta(days=91))

    curve = reliability_curve(action_code="substitute_sku", channel_code="shop")

    top = curve.bins[9]
    assert (curve.bins[8].count, curve.bins[8].accepted) == (0, 0)
    assert (top.count, top.accepted) == (6, 4)
    assert top.acceptance_rate == D("0.6667")
    assert (curve.reviewed, curve.accepted) == (6, 4)
    every_channel = reliability_curve(action_code="substitute_sku")
    assert (every_channel.reviewed, every_channel.accepted) == (11, 9)


def test_curve_days_window(order):
    reviewed(order, [("0.95", 1, 0)], when=timezone.now() - timedelta(days=10))

    assert reliability_curve(action_code="substitute_sku", days=30).reviewed == 1
    assert reliability_curve(action_code="substitute_sku", days=7).reviewed == 0


@pytest.mark.parametrize(
    "kwargs,code,field",
    [
        ({"action_code": "teleport"}, "unknown_action", "action"),
        ({"action_code": "substitute_sku", "channel_code": "nope"}, "unknown_channel", "channel"),
        ({"action_code": "substitute_sku", "days": 0}, "invalid_days", "days"),
        ({"action_code": "substitute_sku", "bins": 101}, "invalid_bins", "bins"),
    ],
)
def test_curve_input_errors(db, default_policies, kwargs, code, field):
    with pytest.raises(CalibrationError) as raised:
        reliability_curve(**kwargs)

    assert (raised.value.code, raised.value.field, raised.value.status) == (code, field, 400)


# --- The suggestion and the draft ------------------------------------------------------------


@pytest.fixture
def history(order) -> None:
    """Substitution reviews: mostly rejected up to 0.85, all accepted above it."""
    settings_set(calibration_min_reviews=20)
    reviewed(
        order, [("0.70", 2, 8), ("0.80", 5, 5), ("0.85", 10, 2), ("0.88", 20, 0), ("0.95", 30, 0)]
    )


def test_suggest_compares_with_live(history):
    result = calibration_suggest(action_code="substitute_sku")

    assert result["current_threshold"] == D("0.9200")
    assert result["suggestion"].threshold == D("0.85")
    assert result["suggestion"].precision_above == D("1.0000")
    assert result["suggestion"].reviewed_above == 50
    assert result["target_precision"] == D("0.98")
    assert result["min_reviews"] == 20
    assert result["kept_bands"] == []
    assert result["draftable"] is True
    assert result["curve"].reviewed == 82


def test_draft_copies_live_with_new_threshold(history, ops):
    live = Policy.objects.get(action__code="substitute_sku", channel=None).live_version

    draft = calibration_draft_create(action_code="substitute_sku", user=ops)

    assert draft.published_at is None
    assert draft.policy_id == live.policy_id
    assert draft.number == live.number + 1
    assert draft.confidence_above == D("0.85")
    assert draft.created_by == ops
    for name in (
        "mode",
        "approver_group",
        "item_price_under",
        "require_fresh_stock",
        "review_sla_minutes",
        "on_sla_breach",
        "escalation_group",
        "limits_currency",
    ):
        assert getattr(draft, name) == getattr(live, name), name
    band_fields = ("name", "mode", "customer_tier", "order_value_from", "confidence_above")
    assert [tuple(getattr(b, f) for f in band_fields) for b in draft.bands.all()] == [
        tuple(getattr(b, f) for f in band_fields) for b in live.bands.all()
    ]
    assert Policy.objects.get(pk=live.policy_id).live_version == live


def test_draft_changelog_quotes_figures(history, ops):
    draft = calibration_draft_create(action_code="substitute_sku", user=ops)

    lines = draft.changelog.splitlines()
    assert lines[0] == (
        "Threshold calibration of substitute_sku on all channels: confidence_above 0.9200 -> "
        "0.8500. Copied from v1; nothing else changes."
    )
    assert lines[1] == (
        "Target precision 0.9800 with at least 20 reviewed decisions above the threshold. "
        "Reviewed in the last 90 days: 82. Above 0.8500: 50 reviewed, 50 accepted, precision "
        "1.0000."
    )
    assert "0.7000-0.8000: 10, 2, 0.2000, 0.7000" in lines
    assert "0.8000-0.9000: 42, 35, 0.8333, 0.8524" in lines
    assert "0.9000-1.0000: 30, 30, 1.0000, 0.9500" in lines
    assert lines[-1] == "Backtest this draft before publishing it."
    assert AuditEntry.objects.filter(action="policy_version.created", actor=ops).exists()


def test_draft_needs_permission(history, manager):
    with pytest.raises(PermissionDenied):
        calibration_draft_create(action_code="substitute_sku", user=manager)

    assert not PolicyVersion.objects.filter(published_at__isnull=True).exists()


def test_draft_refused_without_channel_policy(history, ops):
    with pytest.raises(CalibrationError) as raised:
        calibration_draft_create(action_code="substitute_sku", channel_code="shop", user=ops)

    assert raised.value.code == "no_channel_policy"
    assert raised.value.status == 409
    assert "Channel shop has no substitute_sku policy of its own" in raised.value.message


def test_draft_for_channel_policy(history, ops, order, other_channel):
    policy = Policy.objects.create(
        action=ActionType.objects.get(code="substitute_sku"), channel=order.channel
    )
    version = policy_version_create(
        policy=policy,
        user=None,
        changelog="Shop's own.",
        mode="autonomous",
        approver_group="cs_agent",
        confidence_above=D("0.97"),
    )
    policy_version_publish(version=version, user=None)
    # The other channel's poor reviews do not count for the shop.
    reviewed(order, [("0.90", 0, 40)], channel=other_channel)

    draft = calibration_draft_create(action_code="substitute_sku", channel_code="shop", user=ops)

    assert draft.policy == policy
    assert draft.confidence_above == D("0.85")
    assert "on channel shop: confidence_above 0.9700 -> 0.8500" in draft.changelog


def test_draft_refused_when_unchanged(order, ops):
    settings_set(calibration_min_reviews=5)
    reviewed(order, [("0.9201", 5, 0)])

    with pytest.raises(CalibrationError) as raised:
        calibration_draft_create(action_code="substitute_sku", user=ops)

    assert raised.value.code == "unchanged"
    assert raised.value.message == "The live version already uses 0.9200."


def test_draft_refused_with_too_little_data(order, ops):
    reviewed(order, [("0.95", 10, 0)])

    with pytest.raises(CalibrationError) as raised:
        calibration_draft_create(action_code="substitute_sku", user=ops)

    assert raised.value.code == "too_little_data"
    assert "10 reviewed decisions, but at least 50" in raised.value.message


def test_draft_refused_for_hard_block(order, ops):
    settings_set(calibration_min_reviews=5)
    reviewed(order, [("0.95", 5, 0)], action="change_billing_address")

    with pytest.raises(CalibrationError) as raised:
        calibration_draft_create(action_code="change_billing_address", user=ops)

    assert raised.value.code == "invalid_rules"
    assert "never checks limits" in raised.value.message


def test_suggest_lists_bands_that_keep_their_threshold(history, ops):
    policy = Policy.objects.get(action__code="substitute_sku", channel=None)
    live = policy.live_version
    version = policy_version_create(
        policy=policy,
        user=None,
        changelog="A band with its own threshold.",
        bands=[{"name": "Big orders", "order_value_from": D("500"), "confidence_above": D("0.97")}],
        mode=live.mode,
        approver_group=live.approver_group,
        item_price_under=live.item_price_under,
        confidence_above=live.confidence_above,
        require_fresh_stock=live.require_fresh_stock,
    )
    policy_version_publish(version=version, user=None)

    result = calibration_suggest(action_code="substitute_sku")
    draft = calibration_draft_create(action_code="substitute_sku", user=ops)

    assert result["kept_bands"] == [("Big orders", D("0.9700"))]
    assert draft.bands.get().confidence_above == D("0.9700")
    assert "Value bands with their own confidence_above keep it: 'Big orders' (0.9700)." in (
        draft.changelog
    )


# --- The chart ------------------------------------------------------------------------------------


def test_chart_marks_diagonal_and_thresholds(history):
    curve = reliability_curve(action_code="substitute_sku")

    svg = reliability_chart_svg(curve, current=D("0.92"), suggested=D("0.85"))

    assert svg.startswith("<svg")
    assert "<title>Perfect calibration: acceptance rate equals confidence</title>" in svg
    assert "<title>Current threshold: 0.92</title>" in svg
    assert "<title>Suggested threshold: 0.85</title>" in svg
    assert svg.count("<circle") == 3
    assert "0.9000 to 1.0000: 30 of 30 accepted (1.0000), mean confidence 0.9500" in svg


def test_chart_without_data(db, default_policies):
    curve = reliability_curve(action_code="substitute_sku")

    svg = reliability_chart_svg(curve, current=None, suggested=None)

    assert "No reviewed decisions" in svg
    assert "threshold:" not in svg


# --- The page ---------------------------------------------------------------------------------


URL = "/guardrails/calibration/"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_page_needs_login(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_page_forbidden_for_cs_manager(manager):
    assert logged_in(manager).get(URL).status_code == 403
    assert logged_in(manager).post(reverse("guardrails:calibration_draft")).status_code == 403


def test_page_shows_curve_and_suggestion(history, ops):
    response = logged_in(ops).get(URL, {"action": "substitute_sku", "channel": ""})

    text = response.content.decode()
    assert response.status_code == 200
    assert '<dd class="current-threshold">0.9200</dd>' in text
    assert "0.8500: 50 of 50 accepted above it, precision 1.0000" in text
    assert "<svg" in text
    assert "<td>0.9000 to 1.0000</td><td>30</td><td>30</td><td>1.0000</td><td>0.9500</td>" in text
    assert "Create draft policy version" in text


def test_page_rejects_unknown_action(history, ops):
    response = logged_in(ops).get(URL, {"action": "teleport"})

    assert response.status_code == 400
    assert "Select a valid choice. teleport is not one of the available choices." in (
        response.content.decode()
    )


def test_page_explains_why_no_draft(order, ops):
    response = logged_in(ops).get(URL, {"action": "substitute_sku"})

    text = response.content.decode()
    assert response.status_code == 200
    assert 'data-code="too_little_data"' in text
    assert "Create draft policy version" not in text


def test_page_creates_draft_and_links_backtest(history, ops):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ops)
    page = client.get(URL, {"action": "substitute_sku"}).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    response = client.post(
        reverse("guardrails:calibration_draft"),
        {"action": "substitute_sku", "channel": "", "csrfmiddlewaretoken": token},
    )

    draft = PolicyVersion.objects.get(published_at__isnull=True)
    assert response.status_code == 302
    assert response.url == f"{URL}?action=substitute_sku&channel=&draft={draft.pk}"
    shown = client.get(response.url).content.decode()
    assert f"Draft created: {draft}" in shown
    assert 'name="action" value="run_backtest"' in shown
    assert f'name="_selected_action" value="{draft.pk}"' in shown
    assert "Create draft policy version" not in shown

    backtest = client.post(
        reverse("admin:guardrails_policyversion_changelist"),
        {
            "action": "run_backtest",
            "_selected_action": draft.pk,
            "days": "30",
            "apply": "Run backtest",
            "csrfmiddlewaretoken": token,
        },
    )
    run = BacktestRun.objects.get(policy_version=draft)
    assert backtest.status_code == 302
    assert backtest.url == reverse("admin:guardrails_backtestrun_change", args=[run.pk])


def test_page_second_draft_reuses_the_identical_one(history, ops):
    client = logged_in(ops)
    form = {"action": "substitute_sku", "channel": ""}
    first = client.post(reverse("guardrails:calibration_draft"), form)

    second = client.post(reverse("guardrails:calibration_draft"), form)

    draft = PolicyVersion.objects.get(published_at__isnull=True)
    assert first.url == f"{URL}?action=substitute_sku&channel=&draft={draft.pk}"
    assert second.status_code == 302
    assert second.url == f"{URL}?action=substitute_sku&channel=&draft={draft.pk}&existing=1"
    shown = client.get(second.url).content.decode()
    assert "A draft with this threshold already exists: <a href=" in shown
    assert f'/{draft.pk}/change/">v{draft.number}</a>' in shown
    assert "Draft created" not in shown


def test_draft_after_a_different_draft_is_new(history, ops):
    first = calibration_draft_create(action_code="substitute_sku", user=ops)
    # A draft with other rules, e.g. edited by hand, is not a copy of the calibration draft.
    PolicyVersion.objects.filter(pk=first.pk).update(review_sla_minutes=5)

    second, created = calibration_draft_get_or_create(action_code="substitute_sku", user=ops)

    assert created is True
    assert second.pk != first.pk
    assert calibration_draft_get_or_create(action_code="substitute_sku", user=ops) == (
        second,
        False,
    )


def test_page_says_channel_has_no_policy_of_its_own(history, ops):
    text = logged_in(ops).get(URL, {"action": "substitute_sku", "channel": "shop"}).content
    live = Policy.objects.get(action__code="substitute_sku", channel=None).live_version

    assert (
        f"Channel shop has no substitute_sku policy of its own; shown is the policy for all "
        f"channels, {live}."
    ) in text.decode()


def test_page_channel_with_own_policy_has_no_scope_note(history, ops):
    text = logged_in(ops).get(URL, {"action": "substitute_sku", "channel": ""}).content

    assert b"policy of its own; shown is" not in text


def test_page_post_refused_shows_reason(order, ops):
    response = logged_in(ops).post(
        reverse("guardrails:calibration_draft"), {"action": "substitute_sku", "channel": ""}
    )

    assert response.status_code == 409
    assert "Too little data: 0 reviewed decisions" in response.content.decode()
    assert not PolicyVersion.objects.filter(published_at__isnull=True).exists()


def test_page_post_rejects_bad_channel(history, ops):
    response = logged_in(ops).post(
        reverse("guardrails:calibration_draft"), {"action": "substitute_sku", "channel": "nope"}
    )

    assert response.status_code == 400
    assert "nope is not one of the available choices" in response.content.decode()


def test_page_queries_flat(order, ops, django_assert_max_num_queries):
    client = logged_in(ops)
    reviewed(order, [("0.95", 5, 0)])
    client.get(URL, {"action": "substitute_sku"})
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        client.get(URL, {"action": "substitute_sku"})
    reviewed(order, [("0.5", 100, 100), ("0.99", 300, 0)])

    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(URL, {"action": "substitute_sku"})


def test_page_counts_last_90_days(order, ops):
    with time_machine.travel(timezone.now() - timedelta(days=100), tick=False):
        reviewed(order, [("0.95", 60, 0)])

    response = logged_in(ops).get(URL, {"action": "substitute_sku"})

    assert "Reviewed decisions</dt><dd>0, of which 0 accepted" in response.content.decode()


# --- Settings ---------------------------------------------------------------------------------


def settings_post(row: GuardrailSettings, **changes) -> dict:
    """The settings admin form's data: the stored values with `changes` applied."""
    data = {name: getattr(row, name) for name in GuardrailSettingsForm.Meta.fields} | changes
    return {key: str(value) for key, value in data.items()}


@pytest.mark.parametrize(
    "field,value,error",
    [
        ("known_answer_rate", "1.5", "Must be from 0 to 1 (1 is 100 %), not 1.5."),
        (
            "calibration_target_precision",
            "0",
            "Must be above 0 and at most 1 (0.98 is 98 %), not 0.",
        ),
        ("calibration_target_precision", "1.01", None),
        ("calibration_min_reviews", "0", "Must be 1 or more, not 0."),
        ("fix_due_days", "0", "Must be 1 or more, not 0."),
        ("review_default_sla_minutes", "99999999999", None),
        ("review_default_sla_minutes", "525601", "Must be at most 525,600 minutes (one year)."),
        ("claim_minutes", "525601", "Must be at most 525,600 minutes (one year)."),
        ("address_confirmation_hours", "8761", "Must be at most 8,760 hours (one year)."),
        ("fix_due_days", "366", "Must be at most 365 days (one year)."),
    ],
)
def test_settings_admin_checks_new_fields(db, default_policies, ops, field, value, error):
    row = GuardrailSettings.objects.get_or_create(pk=1)[0]
    client = logged_in(ops)

    response = client.post(
        reverse("admin:guardrails_guardrailsettings_change", args=[1]),
        settings_post(row, **{field: value}),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field]
    if error:
        assert errors[field] == [error]


def test_settings_admin_saves_new_fields(db, default_policies, ops):
    row = GuardrailSettings.objects.get_or_create(pk=1)[0]

    response = logged_in(ops).post(
        reverse("admin:guardrails_guardrailsettings_change", args=[1]),
        settings_post(row, known_answer_rate="0", calibration_target_precision="1"),
    )

    assert response.status_code == 302
    stored = GuardrailSettings.objects.get(pk=1)
    assert (stored.known_answer_rate, stored.calibration_target_precision) == (D("0"), D("1"))
