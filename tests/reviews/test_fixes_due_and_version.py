"""Fixes backlog limits: the due date horizon, removing a fixing version, and the label
form's permission check before validation."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from guardrails.models import AuditEntry, Version, VersionKind, VersionStatus
from reviews.fixes import DUE_MAX_DAYS, FixError, fix_item_create, fix_item_update
from reviews.models import ErrorLabel, FixItem, ReviewItem, ReviewKind
from tests.conftest import make_user
from tests.guardrails.breaker_fixtures import decisions_create
from tests.guardrails.conftest_decisions import locations_fixture, order_fixture  # noqa: F401
from tests.label_fixtures import label_taxonomy_fixture  # noqa: F401
from tests.reviews.test_weekly_review import (  # noqa: F401
    HTMX,
    NOW,
    _frozen_now,
    decision_add,
    fix_add,
    label_add,
    manager_fixture,
    ops_client_fixture,
    ops_fixture,
    terms_fixture,
)

pytestmark = pytest.mark.django_db

TODAY = NOW.date()


@pytest.fixture
def version(db) -> Version:
    return Version.objects.create(
        kind=VersionKind.MODEL,
        subject="gpt-sub",
        label="2024-09",
        status=VersionStatus.ACTIVE,
        changelog="Stops matching colours across sizes.",
    )


@pytest.fixture
def fixed_labels(order, terms, ops, version) -> tuple[FixItem, list[ErrorLabel]]:
    """A fix with two labels, fixed by `version`."""
    decision = decision_add(order)
    labels = [
        label_add(terms, by=ops, decision=decision, impact=impact)
        for impact in ("chargeback", "failed_delivery")
    ]
    fix = fix_item_create(user=ops, title="Fix", label_ids=[label.pk for label in labels])
    fix_item_update(fix_id=fix.pk, user=ops, fixed_by_version_id=version.pk)
    return fix, labels


# --- Due date horizon ------------------------------------------------------------------------


def test_due_date_at_horizon_accepted(ops):
    fix = fix_add(due_on=TODAY)
    latest = TODAY + timedelta(days=DUE_MAX_DAYS)

    fix_item_update(fix_id=fix.pk, user=ops, due_on=latest)

    fix.refresh_from_db()
    assert fix.due_on == latest


def test_due_date_past_horizon_rejected(ops):
    fix = fix_add(due_on=TODAY)
    too_far = TODAY + timedelta(days=DUE_MAX_DAYS + 1)

    with pytest.raises(FixError) as caught:
        fix_item_update(fix_id=fix.pk, user=ops, due_on=too_far)

    assert caught.value.code == "due_too_far"
    assert caught.value.field == "due_on"
    fix.refresh_from_db()
    assert fix.due_on == TODAY


def test_create_with_far_due_date_rejected(ops):
    with pytest.raises(FixError) as caught:
        fix_item_create(user=ops, title="Fix", due_on=TODAY.replace(year=9999, month=12, day=31))

    assert caught.value.code == "due_too_far"
    assert not FixItem.objects.exists()


def test_backlog_row_rejects_year_9999(ops_client):
    fix = fix_add(due_on=TODAY)

    response = ops_client.post(
        reverse("feedback:fix-update", args=[fix.pk]), {"due_on": "9999-12-31"}, headers=HTMX
    )

    assert response.status_code == 400
    assert "due_on: Due date 9999-12-31 is more than 1825 days" in response.text
    fix.refresh_from_db()
    assert fix.due_on == TODAY


def test_admin_field_rejects_year_9999(admin_client):
    fix = fix_add(due_on=TODAY, title="Admin fix")

    response = admin_client.post(
        reverse("admin:reviews_fixitem_change", args=[fix.pk]),
        {"status": "open", "due_on": "9999-12-31", "fixed_by_version": "", "resolution": ""},
    )

    assert response.status_code == 200
    assert "more than 1825 days" in str(response.context["adminform"].form.errors["due_on"])


# --- Removing the fixing version -------------------------------------------------------------


def test_clear_version_removes_it_from_labels(fixed_labels, ops):
    fix, labels = fixed_labels

    fix_item_update(fix_id=fix.pk, user=ops, clear_fixed_by_version=True)

    fix.refresh_from_db()
    assert fix.fixed_by_version is None
    assert [label.fixed_in for label in ErrorLabel.objects.order_by("pk")] == [None, None]
    entry = AuditEntry.objects.filter(action="fix_item.updated").latest("pk")
    assert entry.after == {"fixed_by_version": None}


def test_clear_version_with_a_version_rejected(fixed_labels, ops, version):
    fix, _labels = fixed_labels

    with pytest.raises(FixError) as caught:
        fix_item_update(
            fix_id=fix.pk, user=ops, fixed_by_version_id=version.pk, clear_fixed_by_version=True
        )

    assert caught.value.field == "fixed_by_version"


def test_backlog_row_no_version_choice(fixed_labels, ops_client):
    fix, _labels = fixed_labels

    page = ops_client.get(reverse("feedback:fixes"))
    response = ops_client.post(
        reverse("feedback:fix-update", args=[fix.pk]), {"fixed_by_version": "none"}, headers=HTMX
    )

    assert '<option value="none">no version (remove gpt-sub' in page.text
    assert response.status_code == 200
    fix.refresh_from_db()
    assert fix.fixed_by_version is None
    assert '<option value="none">' not in response.text


def test_backlog_row_empty_version_keeps_it(fixed_labels, ops_client, version):
    fix, _labels = fixed_labels

    response = ops_client.post(
        reverse("feedback:fix-update", args=[fix.pk]), {"fixed_by_version": ""}, headers=HTMX
    )

    assert response.status_code == 200
    fix.refresh_from_db()
    assert fix.fixed_by_version == version


def test_admin_empty_version_clears_it(fixed_labels, admin_client):
    fix, _labels = fixed_labels

    response = admin_client.post(
        reverse("admin:reviews_fixitem_change", args=[fix.pk]),
        {
            "status": fix.status,
            "due_on": fix.due_on.isoformat(),
            "fixed_by_version": "",
            "resolution": "",
        },
    )

    assert response.status_code == 302
    fix.refresh_from_db()
    assert fix.fixed_by_version is None
    assert not ErrorLabel.objects.filter(fixed_in__isnull=False).exists()


# --- Label form permission before validation -------------------------------------------------


@pytest.mark.parametrize("valid", [True, False])
def test_agent_decision_label_post_is_403(order, label_taxonomy, valid):
    decision = decisions_create(order, 1)[0]
    client = Client()
    client.force_login(make_user("casey", "cs_agent"))
    prefix = f"decision-{decision.pk}"
    form = {f"{prefix}-cause": "", f"{prefix}-impact": "", f"{prefix}-corrective_action": ""}
    if valid:
        form = {
            f"{prefix}-cause": label_taxonomy["cause"]["bad_address_parse"].pk,
            f"{prefix}-impact": label_taxonomy["impact"]["failed_delivery"].pk,
            f"{prefix}-corrective_action": label_taxonomy["corrective_action"]["retrain_model"].pk,
        }

    response = client.post(reverse("labels:decision_add", args=[decision.pk]), form, headers=HTMX)

    assert response.status_code == 403
    assert "You do not have permission to label decisions." in response.text
    assert not ErrorLabel.objects.exists()


def test_viewer_item_label_post_is_403(order, label_taxonomy):
    item = ReviewItem.objects.create(
        kind=ReviewKind.ADDRESS, order=order, reason="Address score 0.70.", source_data={}
    )
    viewer = make_user("vera", None)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_reviewitem", content_type__app_label="reviews")
    )
    client = Client()
    client.force_login(viewer)

    response = client.post(reverse("labels:item_add", args=[item.pk]), {}, headers=HTMX)

    assert response.status_code == 403
    assert "You do not have permission to label review items." in response.text
