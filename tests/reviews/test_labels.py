"""Error labels: taxonomy enforcement, permissions, the decision's outcome, the audit trail,
the default taxonomy and role grants, and the labels panels on the item and order pages."""

import importlib

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from guardrails.models import (
    AuditEntry,
    AutonomyGate,
    Breaker,
    BreakerScope,
    BreakerState,
    DecisionOutcome,
)
from reviews.labels import (
    LabelError,
    LabelForbidden,
    error_label_add,
    error_labels_for_decision,
    label_terms,
)
from reviews.models import ErrorLabel, LabelTerm, ReviewItem, ReviewKind
from tests.conftest import make_user
from tests.guardrails.breaker_fixtures import decisions_create, order_fixture  # noqa: F401
from tests.label_fixtures import label_taxonomy_fixture  # noqa: F401

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
MIGRATION = importlib.import_module("reviews.migrations.0010_label_taxonomy_and_roles")


@pytest.fixture
def item(order) -> ReviewItem:
    """A decided-looking AI review item on the order; labels may go on open or closed items."""
    return ReviewItem.objects.create(
        kind=ReviewKind.ADDRESS,
        order=order,
        reason="Address score 0.70.",
        source_data={},
        status="accepted",
    )


@pytest.fixture
def ops(db) -> User:
    return make_user("olivia", "ops_manager")


def terms_of(taxonomy, cause="wrong_sku_match", impact="wrong_item_shipped", action="fix_mapping"):
    """Keyword arguments of error_label_add for three default terms."""
    return {
        "cause_id": taxonomy["cause"][cause].pk,
        "impact_id": taxonomy["impact"][impact].pk,
        "corrective_action_id": taxonomy["corrective_action"][action].pk,
    }


# --- Adding labels --------------------------------------------------------------------------


def test_label_on_review_item(item, agent, label_taxonomy):
    label = error_label_add(
        user=agent,
        review_item_id=item.pk,
        note="Mapped to the white tee.",
        **terms_of(label_taxonomy),
    )

    label.refresh_from_db()
    assert label.review_item_id == item.pk
    assert label.decision_id is None
    assert label.cause.code == "wrong_sku_match"
    assert label.impact.code == "wrong_item_shipped"
    assert label.corrective_action.code == "fix_mapping"
    assert label.note == "Mapped to the white tee."
    assert label.labelled_by == agent
    assert label.labelled_at is not None


def test_known_answer_item_cannot_be_labelled(agent, label_taxonomy):
    """A known-answer item checks the reviewer; no automation erred on it."""
    from reviews.models import KnownAnswer

    case = KnownAnswer.objects.create(
        kind=ReviewKind.ADDRESS,
        reason="Address score 0.70.",
        source_data={},
        expected="reject",
        explanation="The postcode belongs to another city.",
    )
    seeded = ReviewItem.objects.create(
        kind=ReviewKind.ADDRESS, reason=case.reason, source_data={}, known_answer=case
    )

    with pytest.raises(LabelError) as raised:
        error_label_add(user=agent, review_item_id=seeded.pk, **terms_of(label_taxonomy))

    assert raised.value.code == "known_answer_item"
    assert raised.value.field == "review_item"
    assert not ErrorLabel.objects.exists()


def test_label_on_review_item_is_audited(item, agent, label_taxonomy):
    first = error_label_add(user=agent, review_item_id=item.pk, **terms_of(label_taxonomy))
    second = error_label_add(
        user=agent,
        review_item_id=item.pk,
        note="Correction: the stock was stale.",
        **terms_of(label_taxonomy, cause="stale_stock"),
    )

    audits = list(
        AuditEntry.objects.filter(action="error_label.added", target_type="review_item").order_by(
            "id"
        )
    )
    assert [audit.target_id for audit in audits] == [str(item.pk), str(item.pk)]
    assert audits[1].actor == agent
    assert audits[1].reason == "Correction: the stock was stale."
    assert audits[1].before == {"error_labels": [first.pk]}
    assert audits[1].after == {
        "error_labels": [first.pk, second.pk],
        "error_label": second.pk,
        "cause": "stale_stock",
        "impact": "wrong_item_shipped",
        "corrective_action": "fix_mapping",
        "note": "Correction: the stock was stale.",
    }


@pytest.mark.parametrize(
    ("overrides", "field", "code", "message"),
    [
        (
            {"cause": ("impact", "chargeback")},
            "cause",
            "wrong_term_kind",
            "'chargeback' is an impact, not a cause.",
        ),
        (
            {"impact": ("cause", "stale_stock")},
            "impact",
            "wrong_term_kind",
            "'stale_stock' is a cause, not an impact.",
        ),
        (
            {"corrective_action": ("impact", "none")},
            "corrective_action",
            "wrong_term_kind",
            "'none' is an impact, not a corrective action.",
        ),
    ],
)
def test_term_of_wrong_kind_rejected(item, agent, label_taxonomy, overrides, field, code, message):
    arguments = terms_of(label_taxonomy)
    for name, (kind, term_code) in overrides.items():
        arguments[f"{name}_id"] = label_taxonomy[kind][term_code].pk

    with pytest.raises(LabelError) as raised:
        error_label_add(user=agent, review_item_id=item.pk, **arguments)

    assert raised.value.status == 400
    assert raised.value.field == field
    assert raised.value.code == code
    assert raised.value.message == message
    assert ErrorLabel.objects.count() == 0


def test_switched_off_term_rejected(item, agent, label_taxonomy):
    term = label_taxonomy["impact"]["customer_delay"]
    term.is_active = False
    term.save(update_fields=["is_active"])

    with pytest.raises(LabelError) as raised:
        error_label_add(
            user=agent, review_item_id=item.pk, **terms_of(label_taxonomy, impact="customer_delay")
        )

    assert (raised.value.field, raised.value.code) == ("impact", "term_inactive")
    assert raised.value.message == "'customer_delay' is switched off; choose an active impact."
    assert ErrorLabel.objects.count() == 0


def test_unknown_term_rejected(item, agent, label_taxonomy):
    arguments = terms_of(label_taxonomy) | {"corrective_action_id": 999999}

    with pytest.raises(LabelError) as raised:
        error_label_add(user=agent, review_item_id=item.pk, **arguments)

    assert (raised.value.field, raised.value.code) == ("corrective_action", "term_not_found")
    assert raised.value.message == "Label term 999999 does not exist."


def test_term_id_must_be_integer(item, agent, label_taxonomy):
    arguments = terms_of(label_taxonomy) | {"cause_id": "wrong_sku_match"}

    with pytest.raises(LabelError) as raised:
        error_label_add(user=agent, review_item_id=item.pk, **arguments)

    assert (raised.value.field, raised.value.code) == ("cause", "invalid_id")


@pytest.mark.parametrize("targets", ["none", "both"])
def test_label_needs_exactly_one_target(order, item, manager_user, label_taxonomy, targets):
    decision = decisions_create(order, 1)[0]
    ids = {"decision_id": decision.pk, "review_item_id": item.pk} if targets == "both" else {}

    with pytest.raises(LabelError) as raised:
        error_label_add(user=manager_user, **ids, **terms_of(label_taxonomy))

    assert raised.value.status == 400
    assert (raised.value.field, raised.value.code) == ("target", "invalid_target")
    assert ErrorLabel.objects.count() == 0


def test_unknown_targets_rejected(manager_user, label_taxonomy):
    with pytest.raises(LabelError) as on_decision:
        error_label_add(user=manager_user, decision_id=424242, **terms_of(label_taxonomy))
    with pytest.raises(LabelError) as on_item:
        error_label_add(user=manager_user, review_item_id=424242, **terms_of(label_taxonomy))

    assert (on_decision.value.field, on_decision.value.code) == ("decision", "decision_not_found")
    assert (on_item.value.field, on_item.value.code) == ("review_item", "review_item_not_found")


def test_note_too_long_rejected(item, agent, label_taxonomy):
    with pytest.raises(LabelError) as raised:
        error_label_add(
            user=agent, review_item_id=item.pk, note="x" * 2001, **terms_of(label_taxonomy)
        )

    assert (raised.value.field, raised.value.code) == ("note", "note_too_long")


def test_agent_may_not_label_decision(order, agent, label_taxonomy):
    decision = decisions_create(order, 1)[0]

    with pytest.raises(LabelForbidden) as raised:
        error_label_add(user=agent, decision_id=decision.pk, **terms_of(label_taxonomy))

    assert raised.value.status == 403
    assert raised.value.message == "You do not have permission to label decisions."
    decision.refresh_from_db()
    assert decision.outcome == DecisionOutcome.UNLABELLED


def test_user_without_role_may_not_label_item(item, outsider, label_taxonomy):
    with pytest.raises(LabelForbidden) as raised:
        error_label_add(user=outsider, review_item_id=item.pk, **terms_of(label_taxonomy))

    assert raised.value.message == "You do not have permission to label review items."
    assert ErrorLabel.objects.count() == 0


# --- Labelling a decision: its outcome, the autonomy gate and the breakers -------------------


@pytest.fixture
def manager_user(db) -> User:
    return make_user("morgan", "cs_manager")


def test_label_marks_decision_an_error(order, manager_user, label_taxonomy):
    decision = decisions_create(order, 1)[0]

    label = error_label_add(
        user=manager_user, decision_id=decision.pk, note="Wrong colour.", **terms_of(label_taxonomy)
    )

    decision.refresh_from_db()
    assert decision.outcome == DecisionOutcome.ERROR
    assert decision.labelled_by == manager_user
    assert decision.label_note == "Wrong colour."
    assert decision.is_error is True
    assert error_labels_for_decision(decision_id=decision.pk) == [label]
    audit = AuditEntry.objects.get(action="error_label.added")
    assert (audit.target_type, audit.target_id) == ("decision", str(decision.pk))
    assert audit.before == {"outcome": "unlabelled", "error_labels": []}
    assert audit.after["outcome"] == "error"
    assert audit.after["error_labels"] == [label.pk]
    assert AuditEntry.objects.filter(action="decision.labelled").count() == 1


def test_label_counts_against_autonomy_gate(order, manager_user, label_taxonomy):
    decisions = decisions_create(order, 40)

    error_label_add(user=manager_user, decision_id=decisions[0].pk, **terms_of(label_taxonomy))

    gate = AutonomyGate.objects.get(action__code="substitute_sku")
    assert gate.errors == 1
    assert gate.autonomous_decisions == 40
    # 1 in 40 is 2.5 %, over the default limit of 0.2 %.
    assert gate.suspended is True


def test_labels_open_action_breaker(order, manager_user, label_taxonomy):
    decisions = decisions_create(order, 40)

    # 1 error in 40 is 2.5 %, under the default breaker rate of 5 %.
    error_label_add(user=manager_user, decision_id=decisions[0].pk, **terms_of(label_taxonomy))
    assert not Breaker.objects.filter(
        scope=BreakerScope.ACTION, key="substitute_sku", state=BreakerState.OPEN
    ).exists()

    # 2 in 40 is 5 %: the breaker opens at the rate.
    error_label_add(user=manager_user, decision_id=decisions[1].pk, **terms_of(label_taxonomy))

    breaker = Breaker.objects.get(scope=BreakerScope.ACTION, key="substitute_sku")
    assert breaker.state == BreakerState.OPEN


def test_second_label_keeps_decision_label(order, manager_user, label_taxonomy):
    decision = decisions_create(order, 1)[0]
    error_label_add(user=manager_user, decision_id=decision.pk, **terms_of(label_taxonomy))
    decision.refresh_from_db()
    first_labelled_at = decision.labelled_at

    error_label_add(
        user=manager_user,
        decision_id=decision.pk,
        note="It was the stock, not the mapping.",
        **terms_of(label_taxonomy, cause="stale_stock"),
    )

    decision.refresh_from_db()
    assert decision.labelled_at == first_labelled_at
    assert AuditEntry.objects.filter(action="decision.labelled").count() == 1
    assert [label.cause.code for label in error_labels_for_decision(decision_id=decision.pk)] == [
        "stale_stock",
        "wrong_sku_match",
    ]


def test_label_turns_correct_decision_into_error(order, manager_user, label_taxonomy):
    decision = decisions_create(order, 1)[0]
    decision.outcome = DecisionOutcome.CORRECT
    decision.save(update_fields=["outcome"])

    error_label_add(user=manager_user, decision_id=decision.pk, **terms_of(label_taxonomy))

    decision.refresh_from_db()
    assert decision.outcome == DecisionOutcome.ERROR


# --- The default taxonomy and role grants -----------------------------------------------------


def test_default_taxonomy_codes_and_weights(label_taxonomy):
    assert list(label_taxonomy["cause"]) == [
        "wrong_sku_match",
        "stale_stock",
        "bad_address_parse",
        "low_confidence_applied",
        "policy_gap",
        "carrier_data",
        "channel_data",
        "reviewer_error",
        "other",
    ]
    assert {code: term.weight for code, term in label_taxonomy["impact"].items()} == {
        "none": 0,
        "customer_delay": 2,
        "lost_margin": 2,
        "failed_delivery": 3,
        "wrong_item_shipped": 4,
        "chargeback": 5,
    }
    assert list(label_taxonomy["corrective_action"]) == [
        "retrain_model",
        "revise_prompt",
        "change_policy",
        "fix_mapping",
        "fix_channel_data",
        "reviewer_coaching",
        "none",
    ]
    assert all(term.description for kind in label_taxonomy.values() for term in kind.values())


def test_taxonomy_load_keeps_edited_terms(label_taxonomy):
    term = label_taxonomy["impact"]["chargeback"]
    term.name = "Payment disputed"
    term.weight = 8
    term.save(update_fields=["name", "weight"])
    label_taxonomy["cause"]["other"].delete()

    MIGRATION.load_label_taxonomy(django_apps, None)

    term.refresh_from_db()
    assert (term.name, term.weight) == ("Payment disputed", 8)
    assert LabelTerm.objects.filter(kind="cause", code="other").count() == 1


def test_taxonomy_unload_keeps_used_terms(item, agent, label_taxonomy):
    error_label_add(user=agent, review_item_id=item.pk, **terms_of(label_taxonomy))

    MIGRATION.unload_label_taxonomy(django_apps, None)

    assert sorted(LabelTerm.objects.values_list("code", flat=True)) == [
        "fix_mapping",
        "wrong_item_shipped",
        "wrong_sku_match",
    ]


def test_label_terms_active_in_order(label_taxonomy):
    label_taxonomy["impact"]["lost_margin"].is_active = False
    label_taxonomy["impact"]["lost_margin"].save(update_fields=["is_active"])
    LabelTerm.objects.create(kind="impact", code="recall", name="Product recall", position=15)

    codes = [term.code for term in label_terms("impact")]

    assert codes == [
        "none",
        "customer_delay",
        "recall",
        "failed_delivery",
        "wrong_item_shipped",
        "chargeback",
    ]


def group_permissions(name: str) -> set[str]:
    return {
        f"{permission.content_type.app_label}.{permission.codename}"
        for permission in Group.objects.get(name=name).permissions.select_related("content_type")
    }


def test_role_grants(db):
    MIGRATION.grant_feedback_permissions(django_apps, None)

    agent = group_permissions("cs_agent")
    assert {"reviews.add_errorlabel", "reviews.view_errorlabel", "reviews.view_labelterm"} <= agent
    assert "reviews.export_labelled_examples" not in agent
    assert "reviews.change_labelterm" not in agent
    ops = group_permissions("ops_manager")
    assert {
        "reviews.change_labelterm",
        "reviews.add_labelterm",
        "reviews.export_labelled_examples",
        "reviews.change_fixitem",
        "reviews.change_knownanswer",
    } <= ops
    assert "reviews.delete_labelterm" not in ops
    assert "reviews.view_weekly_review" in group_permissions("cs_manager")
    assert group_permissions("leadership") >= {"reviews.view_weekly_review", "reviews.view_fixitem"}


# --- The labels panel of a review item ------------------------------------------------------


@pytest.fixture
def agent_client(agent) -> Client:
    client = Client()
    client.force_login(agent)
    return client


def form_data(taxonomy, prefix: str, **overrides) -> dict:
    data = {
        "cause": taxonomy["cause"]["bad_address_parse"].pk,
        "impact": taxonomy["impact"]["failed_delivery"].pk,
        "corrective_action": taxonomy["corrective_action"]["retrain_model"].pk,
        "note": "Unit number went into the street.",
    } | overrides
    return {f"{prefix}-{name}": value for name, value in data.items()}


def test_item_page_has_labels_slot(item, agent_client):
    response = agent_client.get(reverse("reviews:item", args=[item.pk]))

    assert response.status_code == 200
    assert f'hx-get="{reverse("labels:item", args=[item.pk])}"' in response.text


def test_item_panel_offers_taxonomy(item, agent_client, label_taxonomy):
    response = agent_client.get(reverse("labels:item", args=[item.pk]), headers=HTMX)

    assert response.status_code == 200
    assert "<!doctype html>" not in response.text
    assert f'id="labels-item-{item.pk}"' in response.text
    assert "No error labels on this review item." in response.text
    assert f'<option value="{label_taxonomy["cause"]["stale_stock"].pk}">Stale stock figures' in (
        response.text
    )
    assert "Chargeback (weight 5)" in response.text
    assert f'name="item-{item.pk}-corrective_action"' in response.text


def test_item_panel_without_permission_shows_labels_only(item, agent, label_taxonomy):
    error_label_add(user=agent, review_item_id=item.pk, **terms_of(label_taxonomy))
    viewer = User.objects.create_user("vera", password="pw")
    viewer.user_permissions.add(Permission.objects.get(codename="view_reviewitem"))
    client = Client()
    client.force_login(viewer)

    response = client.get(reverse("labels:item", args=[item.pk]), headers=HTMX)

    assert response.status_code == 200
    assert "Wrong SKU match" in response.text
    assert "<form" not in response.text


def test_item_label_form_round_trip(item, agent, agent_client, label_taxonomy):
    response = agent_client.post(
        reverse("labels:item_add", args=[item.pk]),
        form_data(label_taxonomy, f"item-{item.pk}"),
        headers=HTMX,
    )

    assert response.status_code == 200
    label = ErrorLabel.objects.get()
    assert (label.review_item_id, label.labelled_by) == (item.pk, agent)
    assert label.cause.code == "bad_address_parse"
    assert label.note == "Unit number went into the street."
    assert f'data-label="{label.pk}"' in response.text
    assert "Address parsed wrongly" in response.text
    assert 'data-code="label_saved"' in response.text
    # A fresh, empty form comes back for the next label.
    assert "Unit number went into the street.</textarea>" not in response.text


def test_item_label_form_errors_inline(item, agent_client, label_taxonomy):
    switched_off = label_taxonomy["cause"]["policy_gap"]
    switched_off.is_active = False
    switched_off.save(update_fields=["is_active"])

    response = agent_client.post(
        reverse("labels:item_add", args=[item.pk]),
        form_data(label_taxonomy, f"item-{item.pk}", cause=switched_off.pk, impact=""),
        headers=HTMX,
    )

    assert response.status_code == 400
    assert response["HX-Retarget"] == f"#labels-item-{item.pk}"
    assert response["HX-Reswap"] == "outerHTML"
    assert f"Select a valid choice. {switched_off.pk} is not one of the available choices." in (
        response.text
    )
    assert "This field is required." in response.text
    assert 'data-code="invalid_label"' in response.text
    assert ErrorLabel.objects.count() == 0


def test_item_label_form_forbidden(item, outsider, label_taxonomy):
    outsider.user_permissions.add(Permission.objects.get(codename="view_reviewitem"))
    client = Client()
    client.force_login(outsider)

    response = client.post(
        reverse("labels:item_add", args=[item.pk]),
        form_data(label_taxonomy, f"item-{item.pk}"),
        headers=HTMX,
    )

    assert response.status_code == 403
    assert 'data-code="forbidden"' in response.text
    assert ErrorLabel.objects.count() == 0


def test_item_label_form_without_javascript(item, agent_client, label_taxonomy):
    page = agent_client.get(reverse("labels:item", args=[item.pk]))
    response = agent_client.post(
        reverse("labels:item_add", args=[item.pk]), form_data(label_taxonomy, f"item-{item.pk}")
    )

    assert page.status_code == 200
    assert "<!doctype html>" in page.text
    assert f'action="{reverse("labels:item_add", args=[item.pk])}"' in page.text
    assert response.status_code == 302
    assert response["Location"] == reverse("labels:item", args=[item.pk])
    assert ErrorLabel.objects.count() == 1


def test_item_panel_unknown_item(agent_client):
    response = agent_client.get(reverse("labels:item", args=[424242]), headers=HTMX)

    assert response.status_code == 404
    assert "Review item #424242 does not exist." in response.text


# --- The decisions of an order with their labels --------------------------------------------


@pytest.fixture
def manager_client(manager_user) -> Client:
    client = Client()
    client.force_login(manager_user)
    return client


def test_order_page_has_decisions_slot(order, manager_client):
    response = manager_client.get(reverse("orders:detail", args=[order.pk]))

    assert response.status_code == 200
    assert f'hx-get="{reverse("labels:order_decisions", args=[order.pk])}"' in response.text


def test_order_decisions_label_round_trip(order, manager_user, manager_client, label_taxonomy):
    first, second = decisions_create(order, 2)

    panel = manager_client.get(reverse("labels:order_decisions", args=[order.pk]), headers=HTMX)
    response = manager_client.post(
        reverse("labels:decision_add", args=[second.pk]),
        form_data(label_taxonomy, f"decision-{second.pk}"),
        headers=HTMX,
    )

    assert panel.status_code == 200
    assert f'id="labels-decision-{first.pk}"' in panel.text
    assert f'name="decision-{second.pk}-cause"' in panel.text
    assert response.status_code == 200
    assert f'id="labels-decision-{second.pk}"' in response.text
    assert 'data-outcome="error"' in response.text
    second.refresh_from_db()
    assert second.outcome == DecisionOutcome.ERROR
    assert ErrorLabel.objects.get().decision_id == second.pk


def test_order_decisions_read_only_for_agent(order, agent, agent_client, label_taxonomy):
    decision = decisions_create(order, 1)[0]
    error_label_add(
        user=make_user("morgan", "cs_manager"),
        decision_id=decision.pk,
        **terms_of(label_taxonomy),
    )

    panel = agent_client.get(reverse("labels:order_decisions", args=[order.pk]), headers=HTMX)
    post = agent_client.post(
        reverse("labels:decision_add", args=[decision.pk]),
        form_data(label_taxonomy, f"decision-{decision.pk}"),
        headers=HTMX,
    )

    assert panel.status_code == 200
    assert "Wrong SKU match" in panel.text
    assert "<form" not in panel.text
    assert post.status_code == 403
    assert "You do not have permission to label decisions." in post.text


def test_order_decisions_hidden_without_permission(order, outsider):
    client = Client()
    client.force_login(outsider)

    response = client.get(reverse("labels:order_decisions", args=[order.pk]), headers=HTMX)

    assert response.status_code == 200
    assert response.content == b""


def test_order_decisions_query_count_flat(order, manager_user, manager_client, label_taxonomy):
    url = reverse("labels:order_decisions", args=[order.pk])
    decisions = decisions_create(order, 1)
    error_label_add(user=manager_user, decision_id=decisions[0].pk, **terms_of(label_taxonomy))
    manager_client.get(url, headers=HTMX)  # warms the session and permission caches

    with CaptureQueriesContext(connection) as few:
        manager_client.get(url, headers=HTMX)
    for decision in decisions_create(order, 5):
        error_label_add(user=manager_user, decision_id=decision.pk, **terms_of(label_taxonomy))
    with CaptureQueriesContext(connection) as many:
        response = manager_client.get(url, headers=HTMX)

    assert response.text.count('class="label-form"') == 6
    assert len(many) == len(few)


# --- The taxonomy admin ---------------------------------------------------------------------


@pytest.fixture
def ops_admin(ops) -> Client:
    ops.is_staff = True
    ops.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(ops)
    return client


def test_admin_switches_terms_off_with_audit(ops_admin, label_taxonomy):
    term = label_taxonomy["cause"]["policy_gap"]

    response = ops_admin.post(
        reverse("admin:reviews_labelterm_changelist"),
        {"action": "switch_off", "_selected_action": [term.pk]},
    )

    assert response.status_code == 302
    term.refresh_from_db()
    assert term.is_active is False
    audit = AuditEntry.objects.get(action="label_term.changed")
    assert (audit.target_type, audit.target_id) == ("reviews.labelterm", str(term.pk))
    assert audit.before["is_active"] is True
    assert audit.after["is_active"] is False


def test_admin_offers_no_delete(ops_admin, label_taxonomy):
    term = label_taxonomy["cause"]["policy_gap"]

    changelist = ops_admin.get(reverse("admin:reviews_labelterm_changelist"))
    delete = ops_admin.post(reverse("admin:reviews_labelterm_delete", args=[term.pk]))

    assert changelist.status_code == 200
    assert 'value="delete_selected"' not in changelist.text
    assert 'value="switch_off"' in changelist.text
    assert delete.status_code == 403
    assert LabelTerm.objects.filter(pk=term.pk).exists()


def test_admin_keeps_code_of_existing_term(ops_admin, label_taxonomy):
    term = label_taxonomy["impact"]["chargeback"]

    response = ops_admin.post(
        reverse("admin:reviews_labelterm_change", args=[term.pk]),
        {
            "kind": "cause",
            "code": "renamed",
            "name": "Payment disputed",
            "description": term.description,
            "weight": "6",
            "position": "50",
            "is_active": "on",
        },
    )

    assert response.status_code == 302
    term.refresh_from_db()
    assert (term.kind, term.code, term.name, term.weight) == (
        "impact",
        "chargeback",
        "Payment disputed",
        6,
    )
    audit = AuditEntry.objects.get(action="label_term.changed")
    assert (audit.before["weight"], audit.after["weight"]) == (5, 6)


def test_error_label_admin_read_only(ops_admin, item, agent, label_taxonomy):
    label = error_label_add(user=agent, review_item_id=item.pk, **terms_of(label_taxonomy))

    changelist = ops_admin.get(reverse("admin:reviews_errorlabel_changelist"))
    change = ops_admin.post(
        reverse("admin:reviews_errorlabel_change", args=[label.pk]), {"note": "edited"}
    )

    assert changelist.status_code == 200
    assert f"/{label.pk}/change/" in changelist.text
    assert change.status_code == 403
    label.refresh_from_db()
    assert label.note == ""
