"""The versions and canaries API: create, compare, operate, the 400/403/409 errors, and the
assignment endpoint AI agents ask before they propose."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

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
from orders.fulfilment import shipment_record
from orders.models import (
    ChannelApiGrant,
    FulfilmentException,
    FulfilmentExceptionReason,
    FulfilmentStage,
    Order,
    OrderStatus,
)
from tests.conftest import make_user
from tests.guardrails.canary_fixtures import (
    canary_of,
    model_versions,
    orders_in_arm,
    propose_carrier,
)

pytestmark = pytest.mark.django_db

VERSIONS = "/api/v1/versions/"
CANARIES = "/api/v1/canaries/"
ASSIGNMENT = "/api/v1/canaries/assignment/"


def api_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def ops(db) -> User:
    return make_user("olivia", "ops_manager")


@pytest.fixture
def ops_api(ops) -> APIClient:
    return api_for(ops)


@pytest.fixture
def versions(ops, default_policies, catalog) -> tuple[Version, Version]:
    """gpt-carrier v1 active and v2 a draft."""
    return model_versions(ops)


@pytest.fixture
def canary(ops, versions) -> Canary:
    return canary_of(ops, versions[1], name="Carrier v2")


def _error(response) -> dict:
    return response.json()["error"]


# --- Versions --------------------------------------------------------------------------------


def test_create_version(ops_api, default_policies):
    response = ops_api.post(
        VERSIONS,
        {
            "kind": "prompt",
            "subject": "gpt-address",
            "label": "2025-02",
            "action": "correct_shipping_address",
            "changelog": "Keeps the apartment number.",
            "config": {"prompt": "Correct the address; keep unit numbers."},
        },
        format="json",
    )

    body = response.json()
    assert response.status_code == 201
    assert body["status"] == VersionStatus.DRAFT
    assert body["action"] == "correct_shipping_address"
    assert body["config"] == {"prompt": "Correct the address; keep unit numbers."}
    assert body["created_by"] == "olivia"
    assert AuditEntry.objects.filter(action="version.created", target_id=str(body["id"])).exists()


def test_create_version_taken_label(ops_api, versions):
    response = ops_api.post(
        VERSIONS,
        {"kind": "model", "subject": "gpt-carrier", "label": "v2", "changelog": "Again."},
        format="json",
    )

    assert response.status_code == 400
    assert _error(response)["code"] == "label_taken"
    assert "label" in _error(response)["fields"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "spreadsheet"}, "kind"),
        ({"subject": ""}, "subject"),
        ({"changelog": ""}, "changelog"),
        ({"action": "teleport_parcel"}, "action"),
        ({"policy_versions": [99999]}, "policy_versions"),
    ],
)
def test_create_version_rejects_bad_input(ops_api, default_policies, change, field):
    data = {"kind": "model", "subject": "gpt-x", "label": "v1", "changelog": "First."}

    response = ops_api.post(VERSIONS, data | change, format="json")

    assert response.status_code == 400
    assert field in _error(response)["fields"]
    assert not Version.objects.exists()


def test_cs_manager_cannot_create_version(default_policies):
    client = api_for(make_user("morgan", "cs_manager"))

    response = client.post(
        VERSIONS,
        {"kind": "model", "subject": "gpt-x", "label": "v1", "changelog": "First."},
        format="json",
    )

    assert response.status_code == 403
    assert _error(response)["code"] == "permission_denied"


def test_cs_agent_cannot_list_versions(versions):
    response = api_for(make_user("alice", "cs_agent")).get(VERSIONS)

    assert response.status_code == 403


def test_list_versions_filtered(ops_api, versions):
    active, draft = versions

    by_status = ops_api.get(VERSIONS, {"status": "draft"}).json()
    by_kind = ops_api.get(VERSIONS, {"kind": "prompt"}).json()

    assert [row["id"] for row in by_status["results"]] == [draft.pk]
    assert by_kind["count"] == 0


def test_activate_first_version(ops_api, default_policies):
    version = rollouts.version_create(
        kind="model",
        subject="gpt-new",
        label="v1",
        changelog="First.",
        user=User.objects.get(username="olivia"),
    )

    response = ops_api.post(f"{VERSIONS}{version.pk}/activate/", {"note": "Go."}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == VersionStatus.ACTIVE


def test_activate_second_version_needs_canary(ops_api, versions):
    response = ops_api.post(
        f"{VERSIONS}{versions[1].pk}/activate/", {"note": "Skip the canary."}, format="json"
    )

    assert response.status_code == 409
    assert _error(response)["code"] == "canary_required"


def test_activate_requires_note(ops_api, versions):
    response = ops_api.post(f"{VERSIONS}{versions[1].pk}/activate/", {}, format="json")

    assert response.status_code == 400
    assert "note" in _error(response)["fields"]


# --- Canaries --------------------------------------------------------------------------------


def test_start_canary(ops_api, versions):
    response = ops_api.post(
        CANARIES,
        {
            "candidate": versions[1].pk,
            "share": "0.03",
            "shadow": True,
            "exclude_priority_skus": True,
            "days": 7,
            "min_orders_per_arm": 500,
        },
        format="json",
    )

    body = response.json()
    assert response.status_code == 201
    assert body["status"] == CanaryStatus.RUNNING
    assert body["share"] == "0.0300"
    assert body["shadow"] is True
    assert body["exclude_priority_skus"] is True
    assert body["control"] == versions[0].pk
    assert body["candidate_label"] == "gpt-carrier v2"
    assert body["events"][0]["kind"] == "started"


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"share": "0.2"}, "share", "invalid_share"),
        ({"share": "0.005"}, "share", "invalid_share"),
        ({"days": 0}, "days", "invalid"),
        ({"days": 3_000_000}, "days", "invalid"),
        ({"days": 10**12}, "days", "invalid"),
        ({"min_orders_per_arm": 10**12}, "min_orders_per_arm", "invalid"),
        ({"min_orders_per_arm": 0}, "min_orders_per_arm", "invalid"),
        ({"max_exception_increase_pp": "999"}, "max_exception_increase_pp", "invalid"),
        ({"max_exception_increase_pp": "0.2"}, "max_exception_increase_pp", "invalid"),
        ({"max_exception_increase_pp": "0"}, "max_exception_increase_pp", "invalid"),
        ({"channel": "nowhere"}, "channel", "invalid"),
    ],
)
def test_start_canary_rejects_bad_input(ops_api, versions, change, field, code):
    response = ops_api.post(CANARIES, {"candidate": versions[1].pk} | change, format="json")

    assert response.status_code == 400
    assert _error(response)["code"] == code
    assert field in _error(response)["fields"]
    assert not Canary.objects.exists()


def test_start_canary_days_message(ops_api, versions):
    response = ops_api.post(
        CANARIES, {"candidate": versions[1].pk, "days": 3_000_000}, format="json"
    )

    assert response.status_code == 400
    assert _error(response)["fields"] == {
        "days": ["Ensure this value is less than or equal to 365."]
    }


def test_start_canary_stricter_threshold(ops_api, versions):
    response = ops_api.post(
        CANARIES,
        {"candidate": versions[1].pk, "max_exception_increase_pp": "0.05"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["max_exception_increase_pp"] == "0.050"


def test_start_canary_of_active_version_conflicts(ops_api, versions):
    response = ops_api.post(CANARIES, {"candidate": versions[0].pk}, format="json")

    assert response.status_code == 409
    assert _error(response)["code"] == "not_draft"


def test_start_canary_unknown_candidate(ops_api, versions):
    response = ops_api.post(CANARIES, {"candidate": 99999}, format="json")

    assert response.status_code == 400
    assert list(_error(response)["fields"]) == ["candidate"]


def test_cs_manager_cannot_start_canary(versions):
    client = api_for(make_user("morgan", "cs_manager"))

    response = client.post(CANARIES, {"candidate": versions[1].pk}, format="json")

    assert response.status_code == 403
    assert not Canary.objects.exists()


def test_cs_manager_may_read_comparison(canary):
    client = api_for(make_user("morgan", "cs_manager"))

    response = client.get(f"{CANARIES}{canary.pk}/comparison/")

    assert response.status_code == 200


def _assign(canary: Canary, channel, arm: str, orders: int, exceptions: int) -> None:
    """Give `orders` orders of the arm a decision; the first `exceptions` get an exception."""
    label = "v2" if arm == CanaryArm.CANDIDATE else "v1"
    for index, order in enumerate(orders_in_arm(canary, channel, arm, orders)):
        # The comparison counts only orders with a decision in the canary.
        propose_carrier(order, label)
        if index < exceptions:
            FulfilmentException.objects.create(
                order=order,
                channel=channel,
                stage=FulfilmentStage.SHIP,
                reason=FulfilmentExceptionReason.LATE,
                occurred_at=timezone.now(),
            )


def test_comparison(ops_api, canary, channel):
    _assign(canary, channel, CanaryArm.CONTROL, 4, 1)
    _assign(canary, channel, CanaryArm.CANDIDATE, 2, 0)

    response = ops_api.get(f"{CANARIES}{canary.pk}/comparison/")

    body = response.json()
    assert response.status_code == 200
    assert body["control"]["orders"] == 4
    assert body["control"]["fulfilment_exception_rate"] == "0.250000"
    assert body["control"]["orders_with_reported_exceptions"] == 1
    assert body["control"]["orders_with_failed_deliveries"] == 0
    assert body["control"]["orders_with_fulfilment_returns"] == 0
    assert body["candidate"]["orders"] == 2
    assert body["candidate"]["version"] == "v2"
    assert body["difference_pp"] == "-25.000"
    assert body["outcome"] == "healthy"
    assert body["significance"] == "not significant"
    assert body["thresholds"]["max_exception_increase_pp"] == "0.100"
    assert body["thresholds"]["min_orders_per_arm"] == 2
    assert body["attached"] is False


def test_comparison_too_little_data(ops_api, canary):
    body = ops_api.get(f"{CANARIES}{canary.pk}/comparison/").json()

    assert body["outcome"] == "inconclusive"
    assert body["significance"] == "too little data (inconclusive)"


def test_comparison_unknown_canary(ops_api, versions):
    response = ops_api.get(f"{CANARIES}99999/comparison/")

    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_promote_attaches_comparison(ops_api, canary, channel, versions):
    _assign(canary, channel, CanaryArm.CONTROL, 2, 0)
    _assign(canary, channel, CanaryArm.CANDIDATE, 2, 0)

    response = ops_api.post(
        f"{CANARIES}{canary.pk}/promote/", {"note": "No more exceptions."}, format="json"
    )

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == CanaryStatus.PROMOTED
    assert body["result"]["candidate"]["orders"] == 2
    assert body["events"][0]["kind"] == "promoted"
    assert Version.objects.get(pk=versions[1].pk).status == VersionStatus.ACTIVE
    assert Version.objects.get(pk=versions[0].pk).status == VersionStatus.RETIRED

    comparison = ops_api.get(f"{CANARIES}{canary.pk}/comparison/").json()
    assert comparison["attached"] is True
    assert comparison["candidate"]["orders"] == 2


def test_promote_requires_note(ops_api, canary):
    response = ops_api.post(f"{CANARIES}{canary.pk}/promote/", {"note": ""}, format="json")

    assert response.status_code == 400
    assert "note" in _error(response)["fields"]
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.RUNNING


def test_promote_over_the_limit_conflicts(ops_api, canary, channel):
    _assign(canary, channel, CanaryArm.CONTROL, 2, 0)
    _assign(canary, channel, CanaryArm.CANDIDATE, 2, 1)

    response = ops_api.post(f"{CANARIES}{canary.pk}/promote/", {"note": "Ship."}, format="json")

    assert response.status_code == 409
    assert _error(response)["code"] == "exceeds_limit"


def test_share_pause_resume_stop(ops_api, canary):
    url = f"{CANARIES}{canary.pk}"

    share = ops_api.post(f"{url}/share/", {"share": "0.01"}, format="json")
    pause = ops_api.post(f"{url}/pause/", {"reason": "Peak."}, format="json")
    resume = ops_api.post(f"{url}/resume/", {}, format="json")
    stop = ops_api.post(f"{url}/stop/", {"note": "Enough."}, format="json")

    assert share.json()["share"] == "0.0100"
    assert pause.json()["status"] == CanaryStatus.PAUSED
    assert resume.json()["status"] == CanaryStatus.RUNNING
    assert stop.json()["status"] == CanaryStatus.STOPPED
    assert Version.objects.get(pk=canary.candidate_id).status == VersionStatus.DRAFT


@pytest.mark.parametrize("days", [3_000_000, 10**12, 0])
def test_resume_days_out_of_range(ops_api, canary, days):
    url = f"{CANARIES}{canary.pk}"
    ops_api.post(f"{url}/pause/", {"reason": "Peak."}, format="json")

    response = ops_api.post(f"{url}/resume/", {"days": days}, format="json")

    assert response.status_code == 400
    assert list(_error(response)["fields"]) == ["days"]
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.PAUSED


def test_share_out_of_range(ops_api, canary):
    response = ops_api.post(f"{CANARIES}{canary.pk}/share/", {"share": "0.06"}, format="json")

    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_share"
    assert _error(response)["fields"]["share"][0].startswith("The share must be from 0.01")


def test_stop_ended_canary_conflicts(ops_api, canary):
    ops_api.post(f"{CANARIES}{canary.pk}/stop/", {"note": "Enough."}, format="json")

    response = ops_api.post(f"{CANARIES}{canary.pk}/stop/", {"note": "Again."}, format="json")

    assert response.status_code == 409
    assert _error(response)["code"] == "canary_ended"


def test_cs_manager_cannot_pause(canary):
    client = api_for(make_user("morgan", "cs_manager"))

    response = client.post(f"{CANARIES}{canary.pk}/pause/", {"reason": "x"}, format="json")

    assert response.status_code == 403
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.RUNNING


def test_list_canaries_filtered(ops_api, canary):
    running = ops_api.get(CANARIES, {"status": "running"}).json()
    promoted = ops_api.get(CANARIES, {"status": "promoted"}).json()
    by_kind = ops_api.get(CANARIES, {"kind": "model"}).json()

    assert [row["id"] for row in running["results"]] == [canary.pk]
    assert promoted["count"] == 0
    assert by_kind["count"] == 1


def _list_queries(client: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def test_list_query_counts_flat(ops_api, canary):
    canaries_with_one = _list_queries(ops_api, CANARIES)
    versions_with_two = _list_queries(ops_api, VERSIONS)

    for number in range(5):
        candidate = Version.objects.create(
            kind="prompt", subject=f"prompt-{number}", label="v1", changelog="A prompt."
        )
        Canary.objects.create(
            name=f"Prompt {number}", candidate=candidate, control=canary.control, salt="s"
        )

    assert _list_queries(ops_api, CANARIES) == canaries_with_one
    assert _list_queries(ops_api, VERSIONS) == versions_with_two


# --- Assignment ------------------------------------------------------------------------------


@pytest.fixture
def bot_api(channel) -> APIClient:
    """An AI agent's client, granted the `channel` fixture that the canary's orders are on."""
    user = make_user("agent-bot", "integration")
    ChannelApiGrant.objects.create(user=user, channel=channel)
    return api_for(user)


def test_assignment_gives_sticky_arm(bot_api, canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]
    query = {"order": order.pk, "action": "select_carrier", "model": "gpt-carrier"}

    first = bot_api.get(ASSIGNMENT, query)
    Canary.objects.filter(pk=canary.pk).update(share=Decimal("0.01"))
    second = bot_api.get(ASSIGNMENT, query)

    assert first.status_code == 200
    assert first.json()["canary"] == canary.pk
    assert first.json()["arm"] == CanaryArm.CANDIDATE
    assert first.json()["model_version"] == "v2"
    assert first.json()["control_model_version"] == "v1"
    assert first.json()["shadow"] is False
    assert second.json() == first.json()


def test_assignment_control_arm(bot_api, canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)[0]

    response = bot_api.get(
        ASSIGNMENT, {"order": order.pk, "action": "select_carrier", "model": "gpt-carrier"}
    )

    assert response.json()["arm"] == CanaryArm.CONTROL
    assert response.json()["model_version"] == "v1"


def test_assignment_cancelled_order_not_assigned(bot_api, canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.CANCELLED)

    response = bot_api.get(
        ASSIGNMENT, {"order": order.pk, "action": "select_carrier", "model": "gpt-carrier"}
    )

    assert response.status_code == 200
    assert response.json()["canary"] == canary.pk
    assert response.json()["arm"] == CanaryArm.CONTROL
    assert response.json()["model_version"] == "v1"
    assert not CanaryAssignment.objects.exists()


def test_assignment_shipped_order_not_assigned(bot_api, canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]
    shipment_record(order=order, shipment_id="PARCEL-1", user=None)

    response = bot_api.get(
        ASSIGNMENT, {"order": order.pk, "action": "select_carrier", "model": "gpt-carrier"}
    )

    assert response.json()["canary"] == canary.pk
    assert response.json()["arm"] == CanaryArm.CONTROL
    assert not CanaryAssignment.objects.exists()


def test_assignment_shipped_order_keeps_stored_arm(bot_api, canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]
    query = {"order": order.pk, "action": "select_carrier", "model": "gpt-carrier"}
    bot_api.get(ASSIGNMENT, query)
    shipment_record(order=order, shipment_id="PARCEL-1", user=None)

    response = bot_api.get(ASSIGNMENT, query)

    assert response.json()["arm"] == CanaryArm.CANDIDATE
    assert CanaryAssignment.objects.get().arm == CanaryArm.CANDIDATE


def test_assignment_without_canary(bot_api, canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)[0]

    response = bot_api.get(
        ASSIGNMENT, {"order": order.pk, "action": "select_carrier", "model": "gpt-other"}
    )

    assert response.status_code == 200
    assert response.json() == {"canary": None}


def test_assignment_missing_params(bot_api, canary):
    response = bot_api.get(ASSIGNMENT)

    assert response.status_code == 400
    assert set(_error(response)["fields"]) == {"order", "action", "model"}


def test_assignment_unknown_order(bot_api, canary):
    response = bot_api.get(
        ASSIGNMENT, {"order": 99999, "action": "select_carrier", "model": "gpt-carrier"}
    )

    assert response.status_code == 404
    assert _error(response)["fields"] == {"order": ["Order #99999 does not exist."]}


def test_assignment_unknown_action(bot_api, canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)[0]

    response = bot_api.get(
        ASSIGNMENT, {"order": order.pk, "action": "teleport_parcel", "model": "gpt-carrier"}
    )

    assert response.status_code == 400
    assert "action" in _error(response)["fields"]


def test_assignment_needs_propose_permission(ops_api, canary, channel):
    order = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)[0]

    response = ops_api.get(
        ASSIGNMENT, {"order": order.pk, "action": "select_carrier", "model": "gpt-carrier"}
    )

    assert response.status_code == 403
    assert not CanaryAssignment.objects.exists()


# --- Canaries of a first version, plain messages, strict input types ------------------------


@pytest.fixture
def first_canary(ops, default_policies, catalog) -> Canary:
    """A canary of the first version of gpt-new: it has no control."""
    first = rollouts.version_create(
        kind="model", subject="gpt-new", label="v1", changelog="First.", user=ops
    )
    return canary_of(ops, first, name="gpt-new first")


def test_control_label_null_without_control(ops_api, first_canary):
    detail = ops_api.get(f"{CANARIES}{first_canary.pk}/").json()
    listed = ops_api.get(CANARIES).json()["results"][0]

    assert detail["control"] is None
    assert detail["control_label"] is None
    assert detail["candidate_label"] == "gpt-new v1"
    assert listed["control_label"] is None


def test_canary_control_label(ops_api, canary):
    body = ops_api.get(f"{CANARIES}{canary.pk}/").json()

    assert body["control_label"] == "gpt-carrier v1"


def test_activate_rejected_during_canary(ops_api, first_canary, ops):
    other = rollouts.version_create(
        kind="model", subject="gpt-new", label="v1b", changelog="Other.", user=ops
    )

    response = ops_api.post(f"{VERSIONS}{other.pk}/activate/", {"note": "Go."}, format="json")

    assert response.status_code == 409
    assert _error(response)["code"] == "canary_open"
    assert "Canary gpt-new first (running)" in _error(response)["message"]
    assert Version.objects.get(pk=other.pk).status == VersionStatus.DRAFT


SHARE_RULE = (
    "The share must be from 0.01 to 0.05 (1 to 5 % of orders), with at most 4 decimal places"
)


@pytest.mark.parametrize(
    ("share", "shown"),
    [
        ("-1", "-1"),
        (-1, "-1"),
        ("0.2", "0.2"),
        (0.2, "0.2"),
        ("0.012345", "0.012345"),
        ("1e999", "1e999"),
        ("9" * 400, "99999999999999999999..."),
        ("lots", "lots"),
    ],
)
def test_share_message_states_rule(ops_api, canary, share, shown):
    response = ops_api.post(f"{CANARIES}{canary.pk}/share/", {"share": share}, format="json")

    message = f"{SHARE_RULE}; got {shown}."
    assert response.status_code == 400
    assert _error(response) == {
        "code": "invalid_share",
        "message": message,
        "fields": {"share": [message]},
    }


def test_start_canary_share_message(ops_api, versions):
    response = ops_api.post(
        CANARIES, {"candidate": versions[1].pk, "share": "0.012345"}, format="json"
    )

    assert response.status_code == 400
    assert _error(response)["fields"] == {"share": [f"{SHARE_RULE}; got 0.012345."]}
    assert not Canary.objects.exists()


def test_share_as_json_number(ops_api, canary):
    response = ops_api.post(f"{CANARIES}{canary.pk}/share/", {"share": 0.03}, format="json")

    assert response.status_code == 200
    assert response.json()["share"] == "0.0300"
    assert response.json()["events"][0]["data"] == {"from": "5 %", "to": "3 %"}


@pytest.mark.parametrize("share", ["0.05", "0.0500", 0.05])
def test_share_unchanged_conflicts(ops_api, canary, share):
    response = ops_api.post(f"{CANARIES}{canary.pk}/share/", {"share": share}, format="json")

    assert response.status_code == 409
    assert _error(response)["code"] == "unchanged"
    assert _error(response)["message"] == "The share is already 5 %; give a different share."
    assert not canary.events.filter(kind="share_changed").exists()


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("pause", {"reason": 123}, "reason"),
        ("pause", {"reason": ["Peak."]}, "reason"),
        ("stop", {"note": 1}, "note"),
        ("promote", {"note": True}, "note"),
        ("share", {"share": "0.02", "note": 5}, "note"),
        ("share", {"share": True}, "share"),
    ],
)
def test_text_fields_reject_non_strings(ops_api, canary, action, body, field):
    response = ops_api.post(f"{CANARIES}{canary.pk}/{action}/", body, format="json")

    assert response.status_code == 400
    assert list(_error(response)["fields"]) == [field]
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.RUNNING
    assert Canary.objects.get(pk=canary.pk).share == Decimal("0.05")


@pytest.mark.parametrize("value", [True, False])
def test_resume_days_rejects_boolean(ops_api, canary, value):
    url = f"{CANARIES}{canary.pk}"
    ops_api.post(f"{url}/pause/", {"reason": "Peak."}, format="json")

    response = ops_api.post(f"{url}/resume/", {"days": value}, format="json")

    assert response.status_code == 400
    assert _error(response)["fields"] == {"days": ["Must be a whole number, not true or false."]}
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.PAUSED


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"days": True}, "days"),
        ({"min_orders_per_arm": True}, "min_orders_per_arm"),
        ({"name": 7}, "name"),
    ],
)
def test_start_canary_rejects_wrong_types(ops_api, versions, change, field):
    response = ops_api.post(CANARIES, {"candidate": versions[1].pk} | change, format="json")

    assert response.status_code == 400
    assert list(_error(response)["fields"]) == [field]
    assert not Canary.objects.exists()


def test_create_version_rejects_number_label(ops_api, default_policies):
    response = ops_api.post(
        VERSIONS,
        {"kind": "model", "subject": "gpt-new", "label": 2, "changelog": "Second."},
        format="json",
    )

    assert response.status_code == 400
    assert list(_error(response)["fields"]) == ["label"]
    assert not Version.objects.exists()
