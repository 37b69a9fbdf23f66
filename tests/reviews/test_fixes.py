"""The fixes backlog: fix_item_create and fix_item_update, the backlog page and the admin."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from guardrails.models import AuditEntry, Version, VersionKind, VersionStatus
from reviews.feedback import fix_backlog
from reviews.fixes import FixError, FixForbidden, FixNotFound, fix_item_create, fix_item_update
from reviews.models import ErrorLabel, FixItem, FixStatus
from tests.conftest import make_user
from tests.guardrails.conftest import make_staff_user
from tests.guardrails.conftest_decisions import locations_fixture, order_fixture  # noqa: F401
from tests.label_fixtures import label_taxonomy  # noqa: F401
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
def labels(order, terms, ops) -> list[ErrorLabel]:
    """Three labels on one decision: weights 5, 3 and 2."""
    decision = decision_add(order)
    return [
        label_add(terms, by=ops, decision=decision, impact=impact)
        for impact in ("chargeback", "failed_delivery", "customer_delay")
    ]


@pytest.fixture
def version(db) -> Version:
    return Version.objects.create(
        kind=VersionKind.MODEL,
        subject="gpt-sub",
        label="2024-09",
        status=VersionStatus.ACTIVE,
        changelog="Stops matching colours across sizes.",
    )


def error_of(call) -> FixError:
    with pytest.raises(FixError) as caught:
        call()
    return caught.value


# --- fix_item_create -------------------------------------------------------------------------


def test_create_links_labels_and_sums_priority(labels, ops, manager, terms):
    fix = fix_item_create(
        user=ops,
        title=" Stop colour swaps ",
        action="substitute_sku",
        model_name="gpt-sub",
        model_version="2024-06",
        cause=terms["cause"]["wrong_sku_match"],
        owner=manager.pk,
        label_ids=[labels[0].pk, labels[1].pk],
    )

    assert fix.title == "Stop colour swaps"
    assert fix.priority == 8
    assert fix.owner == manager
    assert fix.status == FixStatus.OPEN
    assert fix.created_by == ops
    assert fix.action.code == "substitute_sku"
    assert sorted(fix.labels.values_list("pk", flat=True)) == [labels[0].pk, labels[1].pk]
    assert ErrorLabel.objects.get(pk=labels[2].pk).fix is None


def test_create_defaults_due_date_from_settings(ops):
    fix = fix_item_create(user=ops, title="Tidy up")

    assert fix.due_on == TODAY + timedelta(days=30)
    assert fix.priority == 0


def test_create_writes_audit_entry(labels, ops, manager):
    fix = fix_item_create(user=ops, title="Fix", owner=manager, label_ids=[labels[2].pk])

    entry = AuditEntry.objects.get(action="fix_item.created")
    assert entry.actor == ops
    assert entry.target_type == "fix_item"
    assert entry.target_id == str(fix.pk)
    assert entry.before is None
    assert entry.after["owner"] == "morgan"
    assert entry.after["priority"] == 2
    assert entry.after["labels"] == [labels[2].pk]


@pytest.mark.parametrize(
    ("arguments", "code", "field"),
    [
        ({"due_on": TODAY - timedelta(days=1)}, "due_in_past", "due_on"),
        ({"owner": 999_999}, "unknown_owner", "owner"),
        ({"title": ""}, "title_missing", "title"),
        ({"title": "x" * 301}, "too_long", "title"),
        ({"action": "teleport"}, "unknown_action", "action"),
        ({"label_ids": [999_999]}, "unknown_labels", "label_ids"),
        ({"label_ids": ["1"]}, "invalid_labels", "label_ids"),
    ],
)
def test_create_rejects_bad_input(ops, arguments, code, field):
    error = error_of(lambda: fix_item_create(user=ops, **({"title": "Fix"} | arguments)))

    assert (error.status, error.code, error.field) == (400, code, field)
    assert not FixItem.objects.exists()


def test_create_accepts_due_today(ops):
    assert fix_item_create(user=ops, title="Fix", due_on=TODAY).due_on == TODAY


def test_create_rejects_owner_without_role(ops):
    agent = make_user("alice", "cs_agent")

    error = error_of(lambda: fix_item_create(user=ops, title="Fix", owner=agent))

    assert (error.code, error.field) == ("owner_without_role", "owner")
    assert error.message == (
        "alice cannot own fixes: choose someone in the ops_manager or cs_manager group."
    )


def test_create_rejects_a_cause_that_is_an_impact(ops, terms):
    error = error_of(
        lambda: fix_item_create(user=ops, title="Fix", cause=terms["impact"]["chargeback"])
    )

    assert (error.code, error.field) == ("invalid_cause", "cause")


def test_create_rejects_labels_of_another_fix(labels, ops):
    first = fix_item_create(user=ops, title="First", label_ids=[labels[0].pk])

    error = error_of(
        lambda: fix_item_create(user=ops, title="Second", label_ids=[labels[0].pk, labels[1].pk])
    )

    assert (error.code, error.field) == ("labels_have_fix", "label_ids")
    assert error.message == f"Error labels {labels[0].pk} already belong to fix #{first.pk}."
    assert ErrorLabel.objects.get(pk=labels[1].pk).fix is None
    assert FixItem.objects.count() == 1


def test_create_needs_permission(manager):
    with pytest.raises(FixForbidden) as caught:
        fix_item_create(user=manager, title="Fix")

    assert caught.value.status == 403
    assert not FixItem.objects.exists()


# --- fix_item_update -------------------------------------------------------------------------


def test_update_done_sets_done_at_and_reopen_clears_it(ops):
    fix = fix_add(due_on=TODAY)

    done = fix_item_update(fix_id=fix.pk, user=ops, status=FixStatus.DONE)
    assert done.done_at == NOW

    reopened = fix_item_update(fix_id=fix.pk, user=ops, status=FixStatus.IN_PROGRESS)
    assert reopened.done_at is None
    assert FixItem.objects.get(pk=fix.pk).status == FixStatus.IN_PROGRESS


def test_update_writes_before_and_after(ops, manager):
    fix = fix_add(due_on=TODAY)

    fix_item_update(
        fix_id=fix.pk, user=ops, owner=manager.pk, due_on=TODAY + timedelta(days=3), status="open"
    )

    entry = AuditEntry.objects.get(action="fix_item.updated")
    assert entry.actor == ops
    assert entry.before == {"owner": None, "due_on": TODAY.isoformat()}
    assert entry.after == {"owner": "morgan", "due_on": (TODAY + timedelta(days=3)).isoformat()}


def test_update_without_changes_writes_nothing(ops):
    fix = fix_add(due_on=TODAY, status=FixStatus.IN_PROGRESS)

    fix_item_update(fix_id=fix.pk, user=ops, status=FixStatus.IN_PROGRESS, due_on=TODAY)

    assert not AuditEntry.objects.filter(action="fix_item.updated").exists()


def test_update_fixed_by_version_marks_labels(labels, ops, version):
    fix = fix_item_create(user=ops, title="Fix", label_ids=[labels[0].pk, labels[1].pk])

    fix_item_update(fix_id=fix.pk, user=ops, fixed_by_version_id=version.pk)

    assert FixItem.objects.get(pk=fix.pk).fixed_by_version == version
    assert [label.fixed_in for label in ErrorLabel.objects.order_by("pk")] == [
        version,
        version,
        None,
    ]


def test_update_wont_fix_needs_resolution(ops):
    fix = fix_add(due_on=TODAY)

    error = error_of(lambda: fix_item_update(fix_id=fix.pk, user=ops, status=FixStatus.WONT_FIX))
    assert (error.code, error.field) == ("resolution_required", "resolution")

    closed = fix_item_update(
        fix_id=fix.pk, user=ops, status=FixStatus.WONT_FIX, resolution="A one-off data glitch."
    )
    assert closed.status == FixStatus.WONT_FIX
    assert closed.resolution == "A one-off data glitch."


def test_update_keeps_an_overdue_date_but_rejects_a_new_past_one(ops):
    overdue = TODAY - timedelta(days=5)
    fix = fix_add(due_on=overdue)

    fix_item_update(fix_id=fix.pk, user=ops, due_on=overdue, status=FixStatus.IN_PROGRESS)

    error = error_of(
        lambda: fix_item_update(fix_id=fix.pk, user=ops, due_on=overdue - timedelta(1))
    )
    assert (error.code, error.field) == ("due_in_past", "due_on")
    assert FixItem.objects.get(pk=fix.pk).due_on == overdue


def test_update_keeps_an_owner_who_lost_the_role(ops, manager):
    fix = fix_add(due_on=TODAY, owner=manager)
    other = fix_add(due_on=TODAY)
    manager.groups.clear()

    fix_item_update(fix_id=fix.pk, user=ops, owner=manager.pk, status=FixStatus.DONE)

    assert FixItem.objects.get(pk=fix.pk).status == FixStatus.DONE
    error = error_of(lambda: fix_item_update(fix_id=other.pk, user=ops, owner=manager.pk))
    assert (error.code, error.field) == ("owner_without_role", "owner")


@pytest.mark.parametrize(
    ("arguments", "code", "field"),
    [
        ({"status": "finished"}, "invalid_status", "status"),
        ({"fixed_by_version_id": 999_999}, "unknown_version", "fixed_by_version"),
        ({"owner": 999_999}, "unknown_owner", "owner"),
        ({"resolution": "x" * 2001}, "too_long", "resolution"),
    ],
)
def test_update_rejects_bad_input(ops, arguments, code, field):
    fix = fix_add(due_on=TODAY)

    error = error_of(lambda: fix_item_update(fix_id=fix.pk, user=ops, **arguments))

    assert (error.status, error.code, error.field) == (400, code, field)


def test_update_missing_fix_is_404(ops):
    with pytest.raises(FixNotFound) as caught:
        fix_item_update(fix_id=999_999, user=ops, status=FixStatus.DONE)

    assert caught.value.status == 404


def test_update_needs_permission(manager):
    fix = fix_add(due_on=TODAY)

    with pytest.raises(FixForbidden):
        fix_item_update(fix_id=fix.pk, user=manager, status=FixStatus.DONE)

    assert FixItem.objects.get(pk=fix.pk).status == FixStatus.OPEN


# --- The backlog -----------------------------------------------------------------------------


def test_backlog_orders_by_priority_then_due_date(ops):
    low = fix_add(priority=2, due_on=TODAY)
    high_late = fix_add(priority=9, due_on=TODAY + timedelta(days=20))
    high_soon = fix_add(priority=9, due_on=TODAY - timedelta(days=2), status=FixStatus.IN_PROGRESS)
    fix_add(priority=50, due_on=TODAY, status=FixStatus.DONE)
    fix_add(priority=50, due_on=TODAY, status=FixStatus.WONT_FIX)

    rows = fix_backlog()

    assert [row.fix for row in rows] == [high_soon, high_late, low]
    assert [row.days_left for row in rows] == [-2, 20, 0]
    assert [row.overdue for row in rows] == [True, False, False]
    assert rows[0].days_overdue == 2


def test_backlog_page_lists_active_fixes(ops_client, manager):
    fix_add(priority=3, due_on=TODAY - timedelta(days=1), title="Overdue fix", owner=manager)
    fix_add(priority=1, due_on=TODAY, title="Done fix", status=FixStatus.DONE)

    response = ops_client.get(reverse("feedback:fixes"))

    assert response.status_code == 200
    body = response.content.decode()
    assert "Overdue fix" in body
    assert "overdue 1 d" in body
    assert "Done fix" not in body
    assert 'data-action="save-fix"' in body

    done = ops_client.get(reverse("feedback:fixes"), {"status": "done"}).content.decode()
    assert "Done fix" in done
    assert "Overdue fix" not in done


def test_backlog_page_invalid_status_is_400(ops_client):
    response = ops_client.get(reverse("feedback:fixes"), {"status": "closed"})

    assert response.status_code == 400
    assert "Invalid status &#x27;closed&#x27;" in response.content.decode()


def test_backlog_page_read_only_without_change_permission(manager):
    fix_add(due_on=TODAY)
    client = Client()
    client.force_login(manager)

    response = client.get(reverse("feedback:fixes"))

    assert response.status_code == 200
    assert 'data-action="save-fix"' not in response.content.decode()
    assert 'data-code="read_only"' in response.content.decode()


def test_backlog_page_forbidden_without_role(client):
    client.force_login(make_user("alice", "cs_agent"))

    assert client.get(reverse("feedback:fixes")).status_code == 403


def test_backlog_page_queries_flat(ops_client, manager, django_assert_max_num_queries):
    fix_add(due_on=TODAY, owner=manager)
    ops_client.get(reverse("feedback:fixes"))
    with django_assert_max_num_queries(12):
        ops_client.get(reverse("feedback:fixes"))
    for _ in range(30):
        fix_add(due_on=TODAY, owner=manager)
    with django_assert_max_num_queries(12):
        ops_client.get(reverse("feedback:fixes"))


def test_htmx_update_returns_the_row(ops_client, manager, version):
    fix = fix_add(due_on=TODAY)

    response = ops_client.post(
        reverse("feedback:fix-update", args=[fix.pk]),
        {
            "status": "in_progress",
            "owner": str(manager.pk),
            "due_on": (TODAY + timedelta(days=7)).isoformat(),
            "fixed_by_version": str(version.pk),
            "resolution": "",
        },
        headers=HTMX,
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert body.startswith(f'<tr id="fix-{fix.pk}"')
    assert f"Fix #{fix.pk} saved." in body
    fix.refresh_from_db()
    assert (fix.status, fix.owner, fix.fixed_by_version) == ("in_progress", manager, version)
    assert fix.due_on == TODAY + timedelta(days=7)


@pytest.mark.parametrize(
    ("form", "status", "text"),
    [
        ({"due_on": "soon"}, 400, "due_on: invalid date &#x27;soon&#x27;; use YYYY-MM-DD."),
        ({"owner": "abc"}, 400, "owner: invalid id &#x27;abc&#x27;."),
        ({"status": "wont_fix"}, 400, "resolution: Say in the resolution why"),
        ({"due_on": "2026-01-01"}, 400, "due_on: Due date 2026-01-01 is in the past"),
    ],
)
def test_htmx_update_rejects_bad_input(ops_client, form, status, text):
    fix = fix_add(due_on=TODAY)

    response = ops_client.post(reverse("feedback:fix-update", args=[fix.pk]), form, headers=HTMX)

    assert response.status_code == status
    assert text in response.content.decode()
    assert FixItem.objects.get(pk=fix.pk).status == FixStatus.OPEN


def test_htmx_update_forbidden_for_read_only_roles(manager):
    fix = fix_add(due_on=TODAY)
    client = Client()
    client.force_login(manager)

    response = client.post(
        reverse("feedback:fix-update", args=[fix.pk]), {"status": "done"}, headers=HTMX
    )

    assert response.status_code == 403
    assert b'data-code="forbidden"' in response.content
    assert FixItem.objects.get(pk=fix.pk).status == FixStatus.OPEN


def test_htmx_update_missing_fix_is_404(ops_client):
    response = ops_client.post(
        reverse("feedback:fix-update", args=[999_999]), {"status": "done"}, headers=HTMX
    )

    assert response.status_code == 404


# --- The admin -------------------------------------------------------------------------------


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(make_staff_user("adam", "ops_manager"))
    return client


def test_admin_overdue_filter(admin_client):
    fix_add(due_on=TODAY - timedelta(days=1), title="Late one")
    fix_add(due_on=TODAY + timedelta(days=1), title="On time one")
    fix_add(due_on=TODAY - timedelta(days=9), title="Closed one", status=FixStatus.DONE)
    url = reverse("admin:reviews_fixitem_changelist")

    overdue = admin_client.get(url, {"overdue": "yes"}).content.decode()
    not_overdue = admin_client.get(url, {"overdue": "no"}).content.decode()

    assert "Late one" in overdue
    assert "On time one" not in overdue
    assert "Closed one" not in overdue
    assert "On time one" in not_overdue
    assert "Closed one" in not_overdue


def test_admin_change_goes_through_the_service(admin_client, manager):
    fix = fix_add(due_on=TODAY, title="Admin fix")
    url = reverse("admin:reviews_fixitem_change", args=[fix.pk])

    response = admin_client.post(
        url,
        {
            "status": "done",
            "owner": str(manager.pk),
            "due_on": TODAY.isoformat(),
            "fixed_by_version": "",
            "resolution": "Mapping corrected.",
        },
    )

    assert response.status_code == 302
    fix.refresh_from_db()
    assert (fix.status, fix.owner, fix.done_at) == ("done", manager, NOW)
    entry = AuditEntry.objects.get(action="fix_item.updated")
    assert entry.after["status"] == "done"
    assert entry.actor.username == "adam"


def test_admin_change_shows_service_errors_on_the_form(admin_client):
    fix = fix_add(due_on=TODAY)
    url = reverse("admin:reviews_fixitem_change", args=[fix.pk])

    response = admin_client.post(
        url,
        {
            "status": "wont_fix",
            "due_on": (TODAY - timedelta(days=1)).isoformat(),
            "resolution": "",
        },
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["resolution"] == ["Say in the resolution why this will not be fixed."]
    assert errors["due_on"][0].startswith("Due date")
    assert FixItem.objects.get(pk=fix.pk).status == FixStatus.OPEN


def test_admin_add_goes_through_the_service(admin_client, manager):
    response = admin_client.post(
        reverse("admin:reviews_fixitem_add"),
        {"title": "From the admin", "owner": str(manager.pk), "due_on": ""},
    )

    assert response.status_code == 302
    fix = FixItem.objects.get()
    assert fix.due_on == TODAY + timedelta(days=30)
    assert fix.created_by.username == "adam"
    assert AuditEntry.objects.filter(action="fix_item.created", target_id=str(fix.pk)).exists()


def test_admin_owner_choices_exclude_users_without_role(admin_client):
    agent = make_user("alice", "cs_agent")

    response = admin_client.post(
        reverse("admin:reviews_fixitem_add"), {"title": "Fix", "owner": str(agent.pk)}
    )

    assert response.status_code == 200
    assert "owner" in response.context["adminform"].form.errors
    assert not FixItem.objects.exists()
