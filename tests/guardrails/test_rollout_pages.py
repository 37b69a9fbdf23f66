"""The canary and version pages, their HTMX actions, and who may see and act."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from guardrails import rollouts
from guardrails.models import (
    AuditEntry,
    Canary,
    CanaryArm,
    CanaryAssignment,
    CanaryStatus,
    Version,
    VersionStatus,
)
from guardrails.rollout_views import significance_words
from orders.models import FulfilmentException, FulfilmentExceptionReason, FulfilmentStage
from reviews.models import ErrorLabel, FixItem, LabelKind, LabelTerm
from tests.conftest import make_user
from tests.guardrails.canary_fixtures import (
    canary_of,
    model_versions,
    orders_in_arm,
    propose_carrier,
)
from tests.guardrails.conftest import make_staff_user

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def ops(db) -> User:
    return make_staff_user("olivia", "ops_manager")


@pytest.fixture
def versions(ops, default_policies) -> tuple[Version, Version]:
    """gpt-carrier v1 active and v2 a draft."""
    return model_versions(ops)


@pytest.fixture
def canary(ops, versions, catalog) -> Canary:
    """A 5 % canary of gpt-carrier v2 that judges from 2 orders per arm."""
    return canary_of(ops, versions[1], name="Carrier v2", share=Decimal("0.05"))


def _arms_with_exceptions(canary: Canary, channel, *, control: int, candidate: int) -> None:
    """Give 4 orders of each arm a decision. The first `control` and `candidate` orders get an
    exception."""
    arms = ((CanaryArm.CONTROL, "v1", control), (CanaryArm.CANDIDATE, "v2", candidate))
    for arm, label, with_exception in arms:
        for index, order in enumerate(orders_in_arm(canary, channel, arm, 4)):
            # The comparison counts only orders with a decision in the canary.
            propose_carrier(order, label)
            if index < with_exception:
                FulfilmentException.objects.create(
                    order=order,
                    channel=channel,
                    stage=FulfilmentStage.PICK,
                    reason=FulfilmentExceptionReason.MISSING_ITEM,
                    occurred_at=timezone.now(),
                )


# --- Who may see -----------------------------------------------------------------------------


def test_list_forbidden_for_cs_agent(canary):
    response = logged_in(make_user("alice", "cs_agent")).get(reverse("rollouts:list"))

    assert response.status_code == 403
    assert "no access to versions and canaries" in response.content.decode()


def test_canary_page_forbidden_for_cs_agent(canary):
    client = logged_in(make_user("alice", "cs_agent"))

    response = client.get(reverse("rollouts:canary", args=[canary.pk]))

    assert response.status_code == 403


def test_list_requires_login(canary):
    response = Client().get(reverse("rollouts:list"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_list_shows_canaries_and_versions(ops, canary):
    response = logged_in(ops).get(reverse("rollouts:list"))

    body = response.content.decode()
    assert response.status_code == 200
    assert f'id="canary-{canary.pk}"' in body
    assert "Carrier v2" in body
    assert "5.00 %" in body
    assert f'id="version-{canary.candidate_id}"' in body
    assert f'id="version-{canary.control_id}"' in body


def test_list_puts_running_canaries_first(ops, default_policies):
    _, old = model_versions(ops, subject="gpt-old")
    stopped = canary_of(ops, old, name="Old canary")
    rollouts.canary_stop(canary_id=stopped.pk, user=ops, note="Superseded.")
    _, new = model_versions(ops, subject="gpt-new")
    running = canary_of(ops, new, name="New canary")
    # Created later, the stopped canary would come first by date alone.
    Canary.objects.filter(pk=stopped.pk).update(created_at=timezone.now() + timedelta(hours=1))

    body = logged_in(ops).get(reverse("rollouts:list")).content.decode()

    assert body.index(f'id="canary-{running.pk}"') < body.index(f'id="canary-{stopped.pk}"')


def test_list_filters_versions_by_status(ops, versions):
    active, draft = versions

    response = logged_in(ops).get(reverse("rollouts:list"), {"status": "active"})

    body = response.content.decode()
    assert f'id="version-{active.pk}"' in body
    assert f'id="version-{draft.pk}"' not in body


def test_list_rejects_unknown_filter(ops, versions):
    response = logged_in(ops).get(reverse("rollouts:list"), {"kind": "spreadsheet"})

    assert response.status_code == 400
    body = response.content.decode()
    assert 'data-code="invalid_filter"' in body
    assert "kind &#x27;spreadsheet&#x27; is not one of model, prompt" in body


def _list_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("rollouts:list"))
    assert response.status_code == 200
    return len(queries)


def test_list_query_count_flat(ops, canary, channel):
    client = logged_in(ops)
    queries_with_one = _list_queries(client)

    for number in range(9):
        candidate = Version.objects.create(
            kind="prompt", subject=f"prompt-{number}", label="v1", changelog="A prompt."
        )
        Canary.objects.create(
            name=f"Prompt {number}",
            candidate=candidate,
            control=canary.control,
            channel=channel,
            salt=f"salt{number}",
            started_at=timezone.now(),
        )
    queries_with_ten = _list_queries(client)

    assert Canary.objects.count() == 10
    assert queries_with_ten == queries_with_one


# --- The canary page -------------------------------------------------------------------------


def test_canary_page_compares_arms(ops, canary, channel):
    _arms_with_exceptions(canary, channel, control=1, candidate=2)

    response = logged_in(ops).get(reverse("rollouts:canary", args=[canary.pk]))

    body = response.content.decode()
    assert response.status_code == 200
    orders_row = body[body.index('data-figure="orders"') :]
    assert '<td class="arm-control">4</td><td class="arm-candidate">4</td>' in orders_row
    rate_row = body[body.index('data-figure="fulfilment_exception_rate"') :]
    assert '<td class="arm-control">25.000 %</td><td class="arm-candidate">50.000 %</td>' in (
        rate_row
    )
    assert "25.000 pp (candidate minus control)" in body
    verdict_row = body[body.index('data-figure="verdict-') :]
    assert verdict_row.split("</th>")[0].endswith("Verdict: applied")
    # The fixture's minimum sample is 2 orders per arm, so 4 each is enough to judge.
    assert "not significant" in body
    assert "within the threshold" not in body
    assert "over the threshold: roll back" in body
    assert 'data-threshold="min_orders_per_arm">2 orders' in body


def test_canary_page_says_too_little_data(ops, canary):
    body = logged_in(ops).get(reverse("rollouts:canary", args=[canary.pk])).content.decode()

    assert "too little data (inconclusive)" in body
    assert 'data-action="promote"' in body


def test_canary_page_lists_events(ops, canary):
    body = logged_in(ops).get(reverse("rollouts:canary", args=[canary.pk])).content.decode()

    assert "<strong>Started</strong> by olivia" in body
    assert "gets 5 % of orders for 14 days" in body


def test_canary_page_unknown_id(ops):
    response = logged_in(ops).get(reverse("rollouts:canary", args=[999]))

    assert response.status_code == 404
    assert "Canary #999 does not exist." in response.content.decode()


def test_cs_manager_sees_page_without_actions(canary):
    client = logged_in(make_user("morgan", "cs_manager"))

    body = client.get(reverse("rollouts:canary", args=[canary.pk])).content.decode()

    assert 'data-action="pause"' not in body
    assert "You can view this canary but not operate it." in body


@pytest.mark.parametrize(
    ("words", "comparison"),
    [
        ("too little data (inconclusive)", {"outcome": "inconclusive", "significant": False}),
        ("significant at 95 %", {"outcome": "rollback", "significant": True}),
        ("not significant", {"outcome": "healthy", "significant": False}),
    ],
)
def test_significance_words(words, comparison):
    assert significance_words(comparison) == words


# --- Actions ---------------------------------------------------------------------------------


def _post(client: Client, name: str, canary: Canary, data: dict):
    return client.post(reverse(f"rollouts:{name}", args=[canary.pk]), data, **HTMX)


def test_share_action_changes_share(ops, canary):
    response = _post(logged_in(ops), "share", canary, {"share": "0.02", "note": "Slower."})

    canary.refresh_from_db()
    body = response.content.decode()
    assert response.status_code == 200
    assert canary.share == Decimal("0.0200")
    assert "Share set to 2.00 %." in body
    assert 'id="canary-main"' in body
    assert "Share changed from 5 % to 2 %. Slower." in body


def test_share_out_of_range_names_field(ops, canary):
    response = _post(logged_in(ops), "share", canary, {"share": "0.2"})

    canary.refresh_from_db()
    body = response.content.decode()
    assert response.status_code == 400
    assert 'data-field="share"' in body
    assert "share: The share must be from 0.01 to 0.05" in body
    assert canary.share == Decimal("0.0500")


def test_refused_action_without_javascript_gets_a_page(ops, canary):
    """A form posted without htmx gets a whole page with the message and a link back."""
    response = logged_in(ops).post(reverse("rollouts:share", args=[canary.pk]), {"share": "0.2"})

    body = response.content.decode()
    assert response.status_code == 400
    assert body.startswith("<!doctype html>")
    assert "share: The share must be from 0.01 to 0.05" in body
    assert f'href="{reverse("rollouts:canary", args=[canary.pk])}"' in body


@pytest.mark.parametrize("share", ["0.012345", "1e999", "9" * 400, "-1"])
def test_share_bad_value_states_rule(ops, canary, share):
    response = _post(logged_in(ops), "share", canary, {"share": share})

    body = response.content.decode()
    assert response.status_code == 400
    assert 'data-field="share"' in body
    assert "with at most 4 decimal places; got" in body
    assert "digits" not in body
    assert "Decimal(" not in body


def test_share_unchanged_rejected(ops, canary):
    response = _post(logged_in(ops), "share", canary, {"share": "0.05"})

    assert response.status_code == 409
    assert "The share is already 5 %; give a different share." in response.content.decode()
    assert not canary.events.filter(kind="share_changed").exists()


def test_share_not_a_number(ops, canary):
    response = _post(logged_in(ops), "share", canary, {"share": "lots"})

    assert response.status_code == 400
    assert 'data-field="share"' in response.content.decode()


def test_pause_then_resume(ops, canary):
    client = logged_in(ops)

    paused = _post(client, "pause", canary, {"reason": "Peak weekend."})
    canary.refresh_from_db()
    assert paused.status_code == 200
    assert canary.status == CanaryStatus.PAUSED
    assert 'data-action="resume"' in paused.content.decode()

    resumed = _post(client, "resume", canary, {"note": "Peak over."})
    canary.refresh_from_db()
    assert resumed.status_code == 200
    assert canary.status == CanaryStatus.RUNNING


def test_resume_after_run_needs_days(ops, canary):
    client = logged_in(ops)
    _post(client, "pause", canary, {"reason": "Run over."})
    Canary.objects.filter(pk=canary.pk).update(ends_at=timezone.now() - timedelta(hours=1))

    rejected = _post(client, "resume", canary, {"note": ""})
    resumed = _post(client, "resume", canary, {"days": "3"})

    assert rejected.status_code == 400
    assert 'data-field="days"' in rejected.content.decode()
    assert resumed.status_code == 200
    canary.refresh_from_db()
    assert canary.status == CanaryStatus.RUNNING


@pytest.mark.parametrize("days", ["3000000", str(10**12), "0"])
def test_resume_days_out_of_range_names_field(ops, canary, days):
    client = logged_in(ops)
    _post(client, "pause", canary, {"reason": "Run over."})
    ends_at = Canary.objects.get(pk=canary.pk).ends_at

    response = _post(client, "resume", canary, {"days": days})

    canary.refresh_from_db()
    body = response.content.decode()
    assert response.status_code == 400
    assert 'data-field="days"' in body
    assert "days: Ensure this value is" in body
    assert canary.status == CanaryStatus.PAUSED
    assert canary.ends_at == ends_at


def test_pause_twice_is_conflict(ops, canary):
    client = logged_in(ops)
    _post(client, "pause", canary, {"reason": "Peak weekend."})

    response = _post(client, "pause", canary, {"reason": "Again."})

    assert response.status_code == 409
    assert 'data-code="not_running"' in response.content.decode()


def test_stop_requires_note(ops, canary):
    response = _post(logged_in(ops), "stop", canary, {"note": ""})

    canary.refresh_from_db()
    assert response.status_code == 400
    assert 'data-field="note"' in response.content.decode()
    assert canary.status == CanaryStatus.RUNNING


def test_stop_ends_canary(ops, canary):
    response = _post(logged_in(ops), "stop", canary, {"note": "Wrong prompt."})

    canary.refresh_from_db()
    assert response.status_code == 200
    assert canary.status == CanaryStatus.STOPPED
    assert canary.candidate.status == VersionStatus.DRAFT
    assert AuditEntry.objects.filter(action="canary.stopped", target_id=str(canary.pk)).exists()


def test_promote_attaches_comparison(ops, canary, channel):
    _arms_with_exceptions(canary, channel, control=1, candidate=1)
    client = logged_in(ops)

    response = _post(client, "promote", canary, {"note": "Same exception rate."})

    canary.refresh_from_db()
    canary.candidate.refresh_from_db()
    assert response.status_code == 200
    assert canary.status == CanaryStatus.PROMOTED
    assert canary.candidate.status == VersionStatus.ACTIVE
    assert canary.result["control"]["orders"] == 4
    assert "Promoted: the candidate is now the active version." in response.content.decode()

    # A late exception changes the live figures, not the comparison the promotion rests on.
    order = CanaryAssignment.objects.filter(canary=canary, arm=CanaryArm.CANDIDATE).last().order
    FulfilmentException.objects.create(
        order=order,
        channel=channel,
        stage=FulfilmentStage.PICK,
        reason=FulfilmentExceptionReason.MISSING_ITEM,
        occurred_at=timezone.now(),
    )
    body = client.get(reverse("rollouts:canary", args=[canary.pk])).content.decode()
    assert "The comparison stored when the canary ended" in body
    rate_row = body[body.index('data-figure="fulfilment_exception_rate"') :]
    assert '<td class="arm-candidate">25.000 %</td>' in rate_row


def test_promote_rejected_over_limit(ops, canary, channel):
    _arms_with_exceptions(canary, channel, control=0, candidate=2)

    response = _post(logged_in(ops), "promote", canary, {"note": "Ship it."})

    canary.refresh_from_db()
    assert response.status_code == 409
    assert 'data-code="exceeds_limit"' in response.content.decode()
    assert canary.status == CanaryStatus.RUNNING


def test_cs_manager_cannot_act(canary):
    client = logged_in(make_user("morgan", "cs_manager"))

    response = _post(client, "pause", canary, {"reason": "Curious."})

    canary.refresh_from_db()
    assert response.status_code == 403
    assert canary.status == CanaryStatus.RUNNING


def test_action_on_unknown_canary(ops):
    response = logged_in(ops).post(
        reverse("rollouts:pause", args=[999]), {"reason": "Gone."}, **HTMX
    )

    assert response.status_code == 404
    assert 'data-code="canary_not_found"' in response.content.decode()


def test_action_without_htmx_redirects(ops, canary):
    response = logged_in(ops).post(reverse("rollouts:pause", args=[canary.pk]), {"reason": "x"})

    assert response.status_code == 302
    assert response["Location"] == reverse("rollouts:canary", args=[canary.pk])


# --- The version page ------------------------------------------------------------------------


def _term(kind: str, code: str) -> LabelTerm:
    return LabelTerm.objects.get_or_create(kind=kind, code=code, defaults={"name": code})[0]


def test_version_page_lists_fixes_and_canaries(ops, canary, channel):
    candidate = canary.candidate
    order = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)[0]
    decision = propose_carrier(order, "v1")
    label = ErrorLabel.objects.create(
        decision=decision,
        cause=_term(LabelKind.CAUSE, "wrong-carrier"),
        impact=_term(LabelKind.IMPACT, "late-delivery"),
        corrective_action=_term(LabelKind.CORRECTIVE_ACTION, "retrain"),
        fixed_in=candidate,
        labelled_by=ops,
    )
    fix = FixItem.objects.create(
        title="Carrier model ignores SLA misses",
        due_on=timezone.now().date(),
        fixed_by_version=candidate,
    )

    response = logged_in(ops).get(reverse("rollouts:version", args=[candidate.pk]))

    body = response.content.decode()
    assert response.status_code == 200
    assert "Weighs carrier reliability higher." in body
    assert f'id="canary-{canary.pk}"' in body
    assert f'id="label-{label.pk}"' in body
    assert f"Decision #{decision.pk}" in body
    assert f'id="fix-{fix.pk}"' in body
    assert "Carrier model ignores SLA misses" in body


def test_version_page_unknown_id(ops):
    response = logged_in(ops).get(reverse("rollouts:version", args=[999]))

    assert response.status_code == 404
