"""Versions and canaries in the Django admin: the add forms save through the rollouts service,
its errors are form errors, and stored rows change only through actions."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from guardrails import rollouts
from guardrails.models import (
    AuditEntry,
    Canary,
    CanaryStatus,
    PolicyVersion,
    Version,
    VersionStatus,
)
from guardrails.policies import RULE_FIELDS, policy_version_create
from reviews.models import FixItem
from tests.conftest import make_user
from tests.guardrails.canary_fixtures import canary_of, model_versions
from tests.guardrails.conftest import make_staff_user

pytestmark = pytest.mark.django_db

VERSION_ADD = reverse("admin:guardrails_version_add")
CANARY_ADD = reverse("admin:guardrails_canary_add")


@pytest.fixture
def ops(db) -> User:
    return make_staff_user("olivia", "ops_manager")


@pytest.fixture
def admin_client(ops) -> Client:
    client = Client()
    client.force_login(ops)
    return client


@pytest.fixture
def versions(ops, default_policies, catalog) -> tuple[Version, Version]:
    return model_versions(ops)


def _version_post(**overrides) -> dict:
    data = {
        "kind": "prompt",
        "subject": "gpt-address",
        "label": "2025-02",
        "action": "",
        "changelog": "Keeps the apartment number.",
        "config": '{"prompt": "Keep unit numbers."}',
    }
    return data | overrides


def _canary_post(candidate: Version, **overrides) -> dict:
    data = {
        "name": "",
        "candidate": candidate.pk,
        "share": "0.05",
        "action": "",
        "channel": "",
        "days": "14",
        "min_orders_per_arm": "1000",
        "max_exception_increase_pp": "0.100",
    }
    return data | overrides


# --- Versions --------------------------------------------------------------------------------


def test_add_version_saves_through_service(admin_client, default_policies):
    response = admin_client.post(VERSION_ADD, _version_post())

    version = Version.objects.get(subject="gpt-address")
    assert response.status_code == 302
    assert version.status == VersionStatus.DRAFT
    assert version.config == {"prompt": "Keep unit numbers."}
    assert version.created_by.username == "olivia"
    assert AuditEntry.objects.filter(action="version.created", target_id=str(version.pk)).exists()


def test_add_version_taken_label_is_form_error(admin_client, versions):
    response = admin_client.post(
        VERSION_ADD, _version_post(kind="model", subject="gpt-carrier", label="v2")
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["label"][0].endswith("'v2'; choose another label.")
    assert Version.objects.filter(subject="gpt-carrier").count() == 2


@pytest.fixture
def draft_policy_version(ops, default_policies) -> PolicyVersion:
    """An unpublished copy of the live substitution policy version."""
    live = PolicyVersion.objects.filter(
        policy__action__code="substitute_sku", published_at__isnull=False
    ).first()
    return policy_version_create(
        policy=live.policy,
        user=ops,
        changelog="Draft for a rule set.",
        bands=[],
        **{name: getattr(live, name) for name in RULE_FIELDS},
    )


def test_add_version_policy_versions_only_for_rule_sets(admin_client, draft_policy_version):
    response = admin_client.post(
        VERSION_ADD, _version_post(policy_versions=[draft_policy_version.pk])
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["policy_versions"] == ["Only rule sets hold policy versions."]
    assert not Version.objects.filter(subject="gpt-address").exists()


def test_add_rule_set(admin_client, draft_policy_version):
    response = admin_client.post(
        VERSION_ADD,
        _version_post(
            kind="rule_set",
            subject="holiday-rules",
            label="2025-12",
            config="{}",
            policy_versions=[draft_policy_version.pk],
        ),
    )

    rule_set = Version.objects.get(subject="holiday-rules")
    assert response.status_code == 302
    assert list(rule_set.policy_versions.all()) == [draft_policy_version]


def test_add_version_offers_only_draft_policy_versions(admin_client, default_policies):
    response = admin_client.get(VERSION_ADD)

    offered = response.context["adminform"].form.fields["policy_versions"].queryset
    assert PolicyVersion.objects.filter(published_at__isnull=False).exists()
    assert not offered.filter(published_at__isnull=False).exists()


def test_stored_version_is_read_only(admin_client, versions):
    draft = versions[1]
    url = reverse("admin:guardrails_version_change", args=[draft.pk])

    page = admin_client.get(url)
    posted = admin_client.post(url, {"label": "v3", "changelog": "Edited."})

    draft.refresh_from_db()
    assert page.status_code == 200
    assert 'name="label"' not in page.content.decode()
    assert posted.status_code == 403
    assert draft.label == "v2"


def test_version_page_lists_fixed_failures(admin_client, versions):
    FixItem.objects.create(
        title="Carrier model ignores SLA misses",
        due_on=timezone.now().date(),
        fixed_by_version=versions[1],
    )

    response = admin_client.get(reverse("admin:guardrails_version_change", args=[versions[1].pk]))

    body = response.content.decode()
    assert "Backlog entries: 1" in body
    assert "Carrier model ignores SLA misses" in body


def test_activate_action_needs_note(admin_client, default_policies, ops):
    version = rollouts.version_create(
        kind="model", subject="gpt-new", label="v1", changelog="First.", user=ops
    )
    url = reverse("admin:guardrails_version_changelist")

    without = admin_client.post(
        url, {"action": "activate", "_selected_action": [version.pk], "note": ""}, follow=True
    )
    version.refresh_from_db()
    assert version.status == VersionStatus.DRAFT
    assert "Enter a note" in without.content.decode()

    admin_client.post(url, {"action": "activate", "_selected_action": [version.pk], "note": "Go."})
    version.refresh_from_db()
    assert version.status == VersionStatus.ACTIVE


def test_activate_action_reports_service_error(admin_client, versions):
    url = reverse("admin:guardrails_version_changelist")

    response = admin_client.post(
        url,
        {"action": "activate", "_selected_action": [versions[1].pk], "note": "Skip."},
        follow=True,
    )

    assert response.status_code == 200
    assert "was not activated" in response.content.decode()
    assert Version.objects.get(pk=versions[1].pk).status == VersionStatus.DRAFT


def test_cs_manager_cannot_add_version(default_policies):
    client = Client()
    client.force_login(make_staff_user("morgan", "cs_manager"))

    response = client.post(VERSION_ADD, _version_post())

    assert response.status_code == 403
    assert not Version.objects.exists()


# --- Canaries --------------------------------------------------------------------------------


def test_add_canary_starts_it(admin_client, versions):
    response = admin_client.post(CANARY_ADD, _canary_post(versions[1], share="0.02"))

    canary = Canary.objects.get()
    assert response.status_code == 302
    assert canary.status == CanaryStatus.RUNNING
    assert str(canary.share) == "0.0200"
    assert canary.control == versions[0]
    assert canary.events.get().kind == "started"


def test_add_canary_invalid_share_is_form_error(admin_client, versions):
    response = admin_client.post(CANARY_ADD, _canary_post(versions[1], share="0.5"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["share"][0].startswith("The share must be from 0.01 to 0.05")
    assert not Canary.objects.exists()
    assert Version.objects.get(pk=versions[1].pk).status == VersionStatus.DRAFT


def test_add_canary_zero_days_is_form_error(admin_client, versions):
    response = admin_client.post(CANARY_ADD, _canary_post(versions[1], days="0"))

    assert response.status_code == 200
    assert "days" in response.context["adminform"].form.errors
    assert not Canary.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("days", "3000000", "Ensure this value is less than or equal to 365."),
        ("days", str(10**12), "Ensure this value is less than or equal to 365."),
        (
            "min_orders_per_arm",
            str(10**12),
            "Ensure this value is less than or equal to 10000000.",
        ),
        ("max_exception_increase_pp", "999", "Ensure this value is less than or equal to 0.1."),
        ("max_exception_increase_pp", "0", "Ensure this value is greater than or equal to 0.001."),
    ],
)
def test_add_canary_out_of_range_is_form_error(admin_client, versions, field, value, message):
    response = admin_client.post(CANARY_ADD, _canary_post(versions[1], **{field: value}))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [message]
    assert not Canary.objects.exists()
    assert Version.objects.get(pk=versions[1].pk).status == VersionStatus.DRAFT


def test_add_canary_offers_only_drafts(admin_client, versions):
    response = admin_client.get(CANARY_ADD)

    offered = response.context["adminform"].form.fields["candidate"].queryset
    assert list(offered) == [versions[1]]


def test_canary_change_page_is_read_only_with_events(admin_client, ops, versions):
    canary = canary_of(ops, versions[1], name="Carrier v2")
    url = reverse("admin:guardrails_canary_change", args=[canary.pk])

    page = admin_client.get(url)
    posted = admin_client.post(url, {"name": "Renamed", "share": "0.01"})

    body = page.content.decode()
    canary.refresh_from_db()
    assert page.status_code == 200
    assert 'name="share"' not in body
    assert reverse("rollouts:canary", args=[canary.pk]) in body
    assert "gets 5 % of orders for 14 days" in body
    assert posted.status_code == 403
    assert canary.name == "Carrier v2"


def test_canary_list_links_comparison(admin_client, ops, versions):
    canary = canary_of(ops, versions[1], name="Carrier v2")

    body = admin_client.get(reverse("admin:guardrails_canary_changelist")).content.decode()

    assert reverse("rollouts:canary", args=[canary.pk]) in body
    assert "5.00 %" in body


def test_cs_manager_cannot_add_canary(versions):
    client = Client()
    client.force_login(make_staff_user("morgan", "cs_manager"))

    response = client.post(CANARY_ADD, _canary_post(versions[1]))

    assert response.status_code == 403
    assert not Canary.objects.exists()


def test_cs_agent_cannot_see_canary_admin(versions):
    user = make_user("alice", "cs_agent")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)

    response = client.get(reverse("admin:guardrails_canary_changelist"))

    assert response.status_code == 403
