"""Every decision, review action, policy change, breaker change and rollout action leaves an
audit entry.

Each row of CHANGES makes one change through its real entry point: the REST API, a page, the
Django admin or a Celery task. The test then checks each entry the change must leave: who
acted (a user, or the label of a system component), when, the reason given, and the state
before and after.
"""

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.db.models import Max
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from catalog.models import ChannelSkuMapping, ExternalIdKind, Sku
from guardrails import rollouts
from guardrails.breakers import SYSTEM_LABEL as BREAKERS_LABEL
from guardrails.forms import GuardrailSettingsForm
from guardrails.models import (
    ActionType,
    AuditEntry,
    Breaker,
    BreakerScope,
    Canary,
    GuardrailSettings,
    Policy,
    PolicyVersion,
    Verdict,
)
from guardrails.policies import policy_version_create
from guardrails.tasks import breakers_check_after_decision, canaries_evaluate
from monitoring.models import Alert, AlertRule, Severity
from monitoring.services import alert_raise
from orders.fulfilment import fulfilment_exception_record
from orders.models import ActorKind, Delivery, DeliveryOutcome
from reviews.models import KnownAnswer, ReviewItem, ReviewKind
from reviews.services import review_item_open_delivery_failed
from reviews.sla import SWEEP_LABEL
from reviews.tasks import review_items_sla_sweep
from tests.guardrails.breaker_fixtures import decisions_create
from tests.guardrails.canary_fixtures import (
    canary_of,
    model_versions,
    orders_in_arm,
    propose_carrier,
)
from tests.guardrails.conftest import (  # noqa: F401
    default_policies,
    integration_user,
    manager,
    ops,
)
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SHIPPING_ADDRESS,
    SUBSTITUTION,
    bot_api_fixture,
    locations_fixture,
    manager_api_fixture,
    order_fixture,
    proposal,
    stock_set,
)

pytestmark = pytest.mark.django_db

AI_LABEL = "ai:gpt-sub/2024-06"
CANARY_LABEL = rollouts.SYSTEM_LABEL
DECISIONS = "/api/v1/decisions/"
REVIEW_ITEMS = "/api/v1/review-items/"
BREAKERS = "/api/v1/breakers/"
VERSIONS = "/api/v1/versions/"
CANARIES = "/api/v1/canaries/"


class Scene:
    """The test's fixtures as attributes, each created on first use."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    def __getattr__(self, name: str):
        return self._request.getfixturevalue(name)

    def use(self, *names: str) -> None:
        """Create fixtures that the change needs only for their rows."""
        for name in names:
            self._request.getfixturevalue(name)


@dataclass(frozen=True)
class Entry:
    """The audit entry a change must leave."""

    action: str
    target_type: str
    # The user name, or the system component's label, recorded as the actor.
    actor: str
    # A part of the entry's reason, or None where the change takes no reason.
    reason: str | None = None
    # Whether the entry records a state before the change (a creation has none).
    before: bool = True


@dataclass(frozen=True)
class Change:
    """One change, made through its real entry point, and the audit entries it must leave."""

    name: str
    # Makes the change and returns the audited target's id, or the ids by target type when
    # the entries are about several targets.
    perform: Callable[[Scene], object]
    entries: tuple[Entry, ...]


# --- Helpers that make changes through the API, pages, admin and tasks -----------------------


def api_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def browser_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def posted(client, url: str, data: dict | None = None, *, status: int = 200):
    response = client.post(url, data or {}, format="json")
    assert response.status_code == status, response.content[:500]
    return response.json()


def admin_posted(client: Client, url: str, data: dict) -> None:
    response = client.post(url, data)
    assert response.status_code == 302, response.content[:2000]


def decision_posted(scene: Scene, *args, verdict: str, **overrides) -> dict:
    body = posted(scene.bot_api, DECISIONS, proposal(scene.order, *args, **overrides), status=201)
    assert body["verdict"] == verdict, body
    return body


def substitution_applied(scene: Scene) -> dict:
    return decision_posted(scene, "substitute_sku", *SUBSTITUTION, verdict=Verdict.APPLIED)


def substitution_queued(scene: Scene) -> dict:
    # 0.90 is under the default policy's 0.92, so a cs_agent must decide it.
    return decision_posted(
        scene, "substitute_sku", *SUBSTITUTION, confidence="0.90", verdict=Verdict.QUEUED_FOR_REVIEW
    )


def billing_change_blocked(scene: Scene) -> dict:
    new_address = {**SHIPPING_ADDRESS, "address1": "1 Elm St"}
    return decision_posted(
        scene,
        "change_billing_address",
        {"billing_address": None},
        {"billing_address": new_address},
        confidence="0.99",
        verdict=Verdict.BLOCKED,
    )


def ship_date_recommended(scene: Scene) -> dict:
    return decision_posted(
        scene,
        "estimate_ship_date",
        {},
        {"ship_date": "2026-12-07"},
        verdict=Verdict.RECOMMENDATION_ONLY,
    )


def item_posted(scene: Scene, item_id: int, verb: str, data: dict | None = None) -> dict:
    return posted(api_for(scene.agent), f"{REVIEW_ITEMS}{item_id}/{verb}/", data)


def queued_item_decided(scene: Scene, verb: str, data: dict | None = None) -> dict:
    decision = substitution_queued(scene)
    item_posted(scene, decision["review_item"], verb, data)
    return decision


def substitution_revised(scene: Scene) -> dict:
    Sku.objects.create(
        code="TEE-CLASSIC-GRY-M", title="Classic Cotton T-Shirt - Grey / M", price="19.99"
    )
    stock_set("TEE-CLASSIC-GRY-M", scene.locations["wh-east"], 4)
    revision = {"revision": {"sku": "TEE-CLASSIC-GRY-M"}, "note": "Grey is closer."}
    return queued_item_decided(scene, "revise", revision)


def item_claimed(scene: Scene) -> int:
    item_id = substitution_queued(scene)["review_item"]
    item_posted(scene, item_id, "claim")
    return item_id


def item_released(scene: Scene) -> int:
    item_id = item_claimed(scene)
    item_posted(scene, item_id, "release")
    return item_id


def item_past_deadline(scene: Scene) -> int:
    item_id = substitution_queued(scene)["review_item"]
    ReviewItem.objects.filter(pk=item_id).update(due_at=timezone.now())

    review_items_sla_sweep()
    return item_id


def known_answer_accepted(scene: Scene) -> int:
    # With a rate of 1 every opened substitution item gets a known-answer item beside it.
    GuardrailSettings.objects.update_or_create(pk=1, defaults={"known_answer_rate": Decimal(1)})
    KnownAnswer.objects.create(
        kind=ReviewKind.SUBSTITUTION,
        reason="Substitute SKU proposed by gpt-sub.",
        source_data={"before": SUBSTITUTION[0]},
        proposal={"action": "substitute_sku", "before": SUBSTITUTION[0], "after": SUBSTITUTION[1]},
        action_code="substitute_sku",
        expected="reject",
        explanation="The customer asked for black.",
    )
    substitution_queued(scene)
    item = ReviewItem.objects.get(known_answer__isnull=False)

    item_posted(scene, item.pk, "accept", {"note": "Looks fine."})
    return item.pk


def dead_letter(scene: Scene) -> Delivery:
    return Delivery.objects.create(
        channel=scene.channel,
        delivery_id="wh-dead",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
        outcome=DeliveryOutcome.DEAD_LETTER,
        error="KeyError: 'line_items'",
    )


def dead_letter_replayed_in_admin(scene: Scene) -> int:
    delivery = dead_letter(scene)
    admin_posted(
        scene.admin_client,
        reverse("admin:orders_delivery_changelist"),
        {"action": "replay_deliveries", "_selected_action": [delivery.pk]},
    )
    return delivery.pk


def dead_letter_replayed_in_queue(scene: Scene) -> int:
    delivery = dead_letter(scene)
    item = review_item_open_delivery_failed(delivery=delivery)
    item_posted(scene, item.pk, "accept")
    return delivery.pk


def substitution_policy() -> Policy:
    return Policy.objects.get(action__code="substitute_sku", channel__isnull=True)


def version_form(policy: Policy, **overrides) -> dict:
    """The policy version add form as an ops manager submits it, without bands."""
    data = {
        "policy": policy.pk,
        "mode": "autonomous",
        "approver_group": Group.objects.get(name="cs_agent").pk,
        "limits_currency": "USD",
        "item_price_under": "20",
        "confidence_above": "0.95",
        "review_sla_minutes": "60",
        "on_sla_breach": "escalate",
        "escalation_group": Group.objects.get(name="cs_manager").pk,
        "changelog": "Tighter substitution limits for the holiday peak.",
        "bands-TOTAL_FORMS": "0",
        "bands-INITIAL_FORMS": "0",
        "bands-MIN_NUM_FORMS": "0",
        "bands-MAX_NUM_FORMS": "1000",
    }
    return data | overrides


def policy_version_added(scene: Scene, **overrides) -> int:
    policy = substitution_policy()
    admin_posted(
        browser_for(scene.ops),
        reverse("admin:guardrails_policyversion_add"),
        version_form(policy, **overrides),
    )
    return policy.pk


def draft_published_in_admin(scene: Scene) -> int:
    policy = substitution_policy()
    draft = policy_version_create(
        policy=policy,
        user=scene.ops,
        changelog="Lower the item price limit.",
        mode="autonomous",
        approver_group="cs_agent",
        item_price_under=Decimal("20"),
        confidence_above=Decimal("0.95"),
    )
    admin_posted(
        browser_for(scene.ops),
        reverse("admin:guardrails_policyversion_changelist"),
        {"action": "publish_drafts", "_selected_action": [draft.pk]},
    )
    assert PolicyVersion.objects.get(pk=draft.pk).published_at is not None
    return policy.pk


def action_type_changed(scene: Scene) -> str:
    action = ActionType.objects.get(code="select_carrier")
    admin_posted(
        browser_for(scene.ops),
        reverse("admin:guardrails_actiontype_change", args=[action.pk]),
        {"risk_tier": "high", "is_active": "on"},
    )
    return action.code


def policy_added(scene: Scene) -> int:
    action = ActionType.objects.get(code="select_carrier")
    # The version history inline comes with the form, empty for a new policy.
    inline = {f"versions-{name}": "0" for name in ("TOTAL_FORMS", "INITIAL_FORMS")}
    response = browser_for(scene.ops).post(
        reverse("admin:guardrails_policy_add"),
        {"action": action.pk, "channel": scene.channel.pk} | inline,
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    return Policy.objects.get(action=action, channel=scene.channel).pk


def settings_changed(scene: Scene) -> int:
    row, _ = GuardrailSettings.objects.get_or_create(pk=1)
    data = {name: getattr(row, name) for name in GuardrailSettingsForm.Meta.fields}
    data["claim_minutes"] = row.claim_minutes + 5
    admin_posted(
        browser_for(scene.ops),
        reverse("admin:guardrails_guardrailsettings_change", args=[row.pk]),
        {key: str(value) for key, value in data.items()},
    )
    return row.pk


def action_breaker() -> Breaker:
    return Breaker.objects.get_or_create(scope=BreakerScope.ACTION, key="substitute_sku")[0]


def breaker_tripped(scene: Scene) -> int:
    # 1 error in 20 applied decisions is the default 5 % threshold.
    decisions = decisions_create(scene.order, 20, errors=1)

    breakers_check_after_decision(decisions[-1].pk)
    return action_breaker().pk


def breaker_operated(scene: Scene, verb: str) -> int:
    breaker = action_breaker()
    client = api_for(scene.ops)
    if verb == "close":
        posted(client, f"{BREAKERS}{breaker.pk}/open/", {"detail": "Supplier feed broken"})
    posted(client, f"{BREAKERS}{breaker.pk}/{verb}/", {"detail": f"{verb} by hand"})
    return breaker.pk


def breaker_reported(scene: Scene, report: str) -> int:
    # The AI agent's client, granted the "shop" channel that it reports on.
    client = scene.bot_api
    scope = {"scope": "channel", "key": "shop"}
    if report == "recovery":
        posted(client, f"{BREAKERS}report-degradation/", scope | {"detail": "Shopify 503s"})
    posted(client, f"{BREAKERS}report-{report}/", scope | {"detail": f"Shopify {report}"})
    return Breaker.objects.get(scope="channel", key="shop").pk


def breaker_operated_in_admin(scene: Scene, action: str) -> int:
    breaker = action_breaker()
    client = browser_for(scene.ops)
    changelist = reverse("admin:guardrails_breaker_changelist")
    if action == "close_by_hand":
        admin_posted(
            client,
            changelist,
            {"action": "open_by_hand", "_selected_action": [breaker.pk], "reason": "Feed broken"},
        )
    admin_posted(
        client,
        changelist,
        {"action": action, "_selected_action": [breaker.pk], "reason": f"{action} in the admin"},
    )
    return breaker.pk


def breaker_added_in_admin(scene: Scene) -> int:
    admin_posted(
        browser_for(scene.ops),
        reverse("admin:guardrails_breaker_add"),
        {"scope": "model", "key": "gpt-sub", "reason": "Vendor incident"},
    )
    return Breaker.objects.get(scope=BreakerScope.MODEL, key="gpt-sub").pk


def alert_of(remediation: str, target: str, threshold: str = "30") -> Alert:
    rule = AlertRule.objects.create(
        name=f"Remediation {remediation}",
        kpi="carrier_mix",
        kind="baseline_deviation",
        threshold=Decimal(threshold),
        severity=Severity.ACTIONABLE,
        owner_group=Group.objects.get(name="ops_manager"),
        runbook="1. Use the remediation button.",
        remediation=remediation,
        remediation_target=target,
    )
    return alert_raise(
        severity=rule.severity,
        source="alert_rules",
        dedup_key=f"rule:{rule.pk}:all",
        title="Carrier mix 50 % off its 7-day baseline",
        owner_group="ops_manager",
        runbook=rule.runbook,
        rule=rule,
        scope="all",
    )


def remediated(scene: Scene, remediation: str, target: str, threshold: str = "30") -> Alert:
    alert = alert_of(remediation, target, threshold)
    response = browser_for(scene.ops).post(reverse("alerts:remediate", args=[alert.pk]))
    assert response.status_code == 302, response.content[:500]
    return alert


def breaker_remediated(scene: Scene) -> int:
    remediated(scene, "open_breaker", "select_carrier")
    return Breaker.objects.get(scope=BreakerScope.ACTION, key="select_carrier").pk


def queue_escalated(scene: Scene) -> int:
    item_id = substitution_queued(scene)["review_item"]
    # A threshold of 0 seconds makes every open item old enough to escalate.
    remediated(scene, "escalate_queue", ReviewKind.SUBSTITUTION, threshold="0")
    return item_id


def autonomy_suspended(scene: Scene) -> str:
    # One autonomous decision labelled an error is over the 0.2 % limit.
    decision = substitution_applied(scene)
    posted(scene.manager_api, f"{DECISIONS}{decision['id']}/label/", {"outcome": "error"})
    return "substitute_sku"


def model_versions_made(scene: Scene):
    scene.use("catalog")
    return model_versions(scene.ops)


def version_created(scene: Scene) -> int:
    body = posted(
        api_for(scene.ops),
        VERSIONS,
        {
            "kind": "prompt",
            "subject": "gpt-address",
            "label": "2025-02",
            "changelog": "Keeps the apartment number.",
        },
        status=201,
    )
    return body["id"]


def version_activated(scene: Scene) -> int:
    version = rollouts.version_create(
        kind="model", subject="gpt-carrier", label="v1", changelog="First.", user=scene.ops
    )
    posted(api_for(scene.ops), f"{VERSIONS}{version.pk}/activate/", {"note": "Goes live."})
    return version.pk


def canary_started(scene: Scene) -> int:
    _, draft = model_versions_made(scene)
    return posted(api_for(scene.ops), CANARIES, {"candidate": draft.pk}, status=201)["id"]


def canary_operated(scene: Scene, verb: str, data: dict) -> int:
    _, draft = model_versions_made(scene)
    canary = canary_of(scene.ops, draft)
    client = api_for(scene.ops)
    if verb == "resume":
        posted(client, f"{CANARIES}{canary.pk}/pause/", {"reason": "Peak."})
    posted(client, f"{CANARIES}{canary.pk}/{verb}/", data)
    return canary.pk


def canary_rolled_back(scene: Scene) -> int:
    _, draft = model_versions_made(scene)
    canary = canary_of(scene.ops, draft, min_orders_per_arm=2)
    candidate_orders = orders_in_arm(canary, scene.channel, "candidate", 2)
    for order in candidate_orders:
        propose_carrier(order, "v2")
    for order in orders_in_arm(canary, scene.channel, "control", 2):
        propose_carrier(order, "v1")
    fulfilment_exception_record(
        order=candidate_orders[0], stage="pick", reason="wrong_item", user=None
    )

    canaries_evaluate()
    assert Canary.objects.get(pk=canary.pk).status == "rolled_back"
    return canary.pk


def channel_hold_changed(scene: Scene, action: str) -> int:
    client = browser_for(scene.ops)
    changelist = reverse("admin:catalog_channel_changelist")
    if action == "release_orders":
        admin_posted(
            client,
            changelist,
            {"action": "hold_orders", "_selected_action": [scene.channel.pk], "reason": "Outage"},
        )
    admin_posted(
        client,
        changelist,
        {"action": action, "_selected_action": [scene.channel.pk], "reason": f"{action} now"},
    )
    return scene.channel.pk


def mapping_added(scene: Scene) -> int:
    sku = scene.catalog[0]
    admin_posted(
        browser_for(scene.ops),
        reverse("admin:catalog_channelskumapping_add"),
        {"channel": scene.channel.pk, "id_kind": "sku", "external_id": "NEW-TEE", "sku": sku.pk},
    )
    return ChannelSkuMapping.objects.get(external_id="NEW-TEE").pk


def mapping_changed(scene: Scene) -> int:
    scene.use("catalog")
    mapping = ChannelSkuMapping.objects.get(external_id="TEE-CLASSIC-BLK-M")
    other = Sku.objects.get(code="TEE-CLASSIC-WHT-M")
    admin_posted(
        browser_for(scene.ops),
        reverse("admin:catalog_channelskumapping_change", args=[mapping.pk]),
        {
            "channel": mapping.channel_id,
            "id_kind": ExternalIdKind.SKU,
            "external_id": mapping.external_id,
            "sku": other.pk,
        },
    )
    return mapping.pk


# --- The table -------------------------------------------------------------------------------


def decision_and_item(body: dict) -> dict:
    return {"decision": body["id"], "review_item": body["review_item"]}


def alert_and_breaker(scene: Scene) -> dict:
    alert = remediated(scene, "open_breaker", "select_carrier")
    breaker = Breaker.objects.get(scope=BreakerScope.ACTION, key="select_carrier")
    return {"alert": alert.pk, "guardrails.breaker": breaker.pk}


def audited(action: str, actor: str, reason: str | None = None) -> Entry:
    """An entry about the target type its action starts with, e.g. "decision" for "decision.x"."""
    return Entry(action, action.split(".")[0], actor=actor, reason=reason)


CHANGES = [
    # Automated decisions: the engine's verdicts through the decisions API.
    Change(
        "engine applies",
        lambda scene: substitution_applied(scene)["id"],
        (
            audited("decision.proposed", "agent-bot", "Verdict applied"),
            audited("decision.applied", AI_LABEL, "Substitute SKU on order"),
        ),
    ),
    Change(
        "engine queues",
        lambda scene: substitution_queued(scene)["id"],
        (audited("decision.proposed", "agent-bot", "Verdict queued_for_review"),),
    ),
    Change(
        "engine blocks",
        lambda scene: billing_change_blocked(scene)["id"],
        (audited("decision.proposed", "agent-bot", "Verdict blocked"),),
    ),
    Change(
        "engine recommends only",
        lambda scene: ship_date_recommended(scene)["id"],
        (audited("decision.proposed", "agent-bot", "Verdict recommendation_only"),),
    ),
    Change(
        "decision reverted",
        lambda scene: posted(
            scene.manager_api,
            f"{DECISIONS}{substitution_applied(scene)['id']}/revert/",
            {"note": "Customer wants black."},
        )["id"],
        (
            audited("decision.reverted", "morgan", "Customer wants black."),
            audited("decision.labelled", "morgan", "Customer wants black."),
        ),
    ),
    Change(
        "decision labelled",
        lambda scene: posted(
            scene.manager_api,
            f"{DECISIONS}{substitution_applied(scene)['id']}/label/",
            {"outcome": "correct", "note": "Customer happy."},
        )["id"],
        (audited("decision.labelled", "morgan", "Customer happy."),),
    ),
    # Human review actions through the review-items API.
    Change(
        "item accepted",
        lambda scene: decision_and_item(queued_item_decided(scene, "accept", {"note": "Same."})),
        (
            audited("review_item.accepted", "alice", "Same."),
            audited("decision.applied", "alice", "Substitute SKU on order"),
        ),
    ),
    Change(
        "item rejected",
        lambda scene: decision_and_item(
            queued_item_decided(scene, "reject", {"note": "Colour matters."})
        ),
        (
            audited("review_item.rejected", "alice", "Colour matters."),
            audited("decision.rejected", "alice", "Colour matters."),
        ),
    ),
    Change(
        "item revised",
        lambda scene: decision_and_item(substitution_revised(scene)),
        (
            audited("review_item.revised", "alice", "Grey is closer."),
            audited("review_item.accepted", "alice", "Grey is closer."),
            audited("decision.revised", "alice", "Revised in review item"),
        ),
    ),
    Change("item claimed", item_claimed, (audited("review_item.claimed", "alice"),)),
    Change("item released", item_released, (audited("review_item.released", "alice"),)),
    Change(
        "item past deadline",
        item_past_deadline,
        (audited("review_item.sla_passed", SWEEP_LABEL, "passed its deadline"),),
    ),
    Change(
        "queue escalated by remediation",
        queue_escalated,
        (audited("review_item.escalated", "olivia", "Alert #"),),
    ),
    Change(
        "known-answer item accepted",
        known_answer_accepted,
        (audited("review_item.accepted", "alice", "Looks fine."),),
    ),
    Change(
        "dead letter replayed in admin",
        dead_letter_replayed_in_admin,
        (audited("delivery.replayed", "admin", "Replayed in the admin"),),
    ),
    Change(
        "dead letter replayed from queue",
        dead_letter_replayed_in_queue,
        (audited("delivery.replayed", "alice", "Accepted in review item"),),
    ),
    # Policy changes in the admin, and the autonomy gate that a label can close.
    Change(
        "policy version drafted",
        lambda scene: policy_version_added(scene),
        (
            Entry(
                "policy_version.created",
                "guardrails.Policy",
                actor="olivia",
                reason="Tighter substitution limits",
                before=False,
            ),
        ),
    ),
    Change(
        "policy version published at once",
        lambda scene: policy_version_added(scene, publish_now="on"),
        (
            Entry(
                "policy_version.published",
                "guardrails.Policy",
                actor="olivia",
                reason="Tighter substitution limits",
            ),
        ),
    ),
    Change(
        "draft published",
        draft_published_in_admin,
        (
            Entry(
                "policy_version.published",
                "guardrails.Policy",
                actor="olivia",
                reason="Lower the item price limit.",
            ),
        ),
    ),
    Change(
        "policy added",
        policy_added,
        (
            Entry(
                "policy.created",
                "guardrails.Policy",
                actor="olivia",
                reason="Added in the admin.",
                before=False,
            ),
        ),
    ),
    Change(
        "action type changed",
        action_type_changed,
        (
            Entry(
                "action_type.changed",
                "guardrails.actiontype",
                actor="olivia",
                reason="Changed in the admin.",
            ),
        ),
    ),
    Change(
        "guardrail settings changed",
        settings_changed,
        (audited("guardrail_settings.changed", "olivia", "Changed in the admin."),),
    ),
    Change(
        "autonomy gate suspended",
        autonomy_suspended,
        (
            Entry(
                "autonomy_gate.suspend",
                "guardrails.actiontype",
                actor="autonomy gate",
                reason="Error rate",
            ),
        ),
    ),
    # Breaker changes: the evaluator, the API, the admin and the alert remediation button.
    Change(
        "breaker tripped by evaluator",
        breaker_tripped,
        (Entry("breaker.open", "guardrails.breaker", actor=BREAKERS_LABEL, reason="Error rate"),),
    ),
    Change(
        "breaker opened in API",
        lambda scene: breaker_operated(scene, "open"),
        (Entry("breaker.open", "guardrails.breaker", actor="olivia", reason="open by hand"),),
    ),
    Change(
        "breaker closed in API",
        lambda scene: breaker_operated(scene, "close"),
        (Entry("breaker.closed", "guardrails.breaker", actor="olivia", reason="close by hand"),),
    ),
    Change(
        "degradation reported",
        lambda scene: breaker_reported(scene, "degradation"),
        (
            Entry(
                "breaker.open",
                "guardrails.breaker",
                actor="agent-bot",
                reason="Shopify degradation",
            ),
        ),
    ),
    Change(
        "recovery reported",
        lambda scene: breaker_reported(scene, "recovery"),
        (
            Entry(
                "breaker.half_open",
                "guardrails.breaker",
                actor="agent-bot",
                reason="Shopify recovery",
            ),
        ),
    ),
    Change(
        "breaker opened in admin",
        lambda scene: breaker_operated_in_admin(scene, "open_by_hand"),
        (
            Entry(
                "breaker.open",
                "guardrails.breaker",
                actor="olivia",
                reason="open_by_hand in the admin",
            ),
        ),
    ),
    Change(
        "breaker closed in admin",
        lambda scene: breaker_operated_in_admin(scene, "close_by_hand"),
        (
            Entry(
                "breaker.closed",
                "guardrails.breaker",
                actor="olivia",
                reason="close_by_hand in the admin",
            ),
        ),
    ),
    Change(
        "breaker added in admin",
        breaker_added_in_admin,
        (Entry("breaker.open", "guardrails.breaker", actor="olivia", reason="Vendor incident"),),
    ),
    Change(
        "remediation button",
        alert_and_breaker,
        (
            audited("alert.remediated", "olivia", "Opened the circuit breaker of select_carrier"),
            Entry(
                "breaker.open", "guardrails.breaker", actor="olivia", reason="Opened from alert #"
            ),
        ),
    ),
    # Versions and canaries through their API, and the canary monitor's rollback.
    Change(
        "version created",
        version_created,
        (
            Entry(
                "version.created",
                "version",
                actor="olivia",
                reason="Keeps the apartment number.",
                before=False,
            ),
        ),
    ),
    Change(
        "version activated",
        version_activated,
        (audited("version.activated", "olivia", "Goes live."),),
    ),
    Change(
        "canary started",
        canary_started,
        (
            Entry(
                "canary.started",
                "canary",
                actor="olivia",
                reason="gets 5 % of orders",
                before=False,
            ),
        ),
    ),
    Change(
        "canary share changed",
        lambda scene: canary_operated(scene, "share", {"share": "0.01"}),
        (audited("canary.share_changed", "olivia"),),
    ),
    Change(
        "canary paused",
        lambda scene: canary_operated(scene, "pause", {"reason": "Peak."}),
        (audited("canary.paused", "olivia", "Peak."),),
    ),
    Change(
        "canary resumed",
        lambda scene: canary_operated(scene, "resume", {}),
        (audited("canary.resumed", "olivia"),),
    ),
    Change(
        "canary promoted",
        lambda scene: canary_operated(scene, "promote", {"note": "No more exceptions."}),
        (audited("canary.promoted", "olivia", "No more exceptions."),),
    ),
    Change(
        "canary stopped",
        lambda scene: canary_operated(scene, "stop", {"note": "Enough."}),
        (audited("canary.stopped", "olivia", "Enough."),),
    ),
    Change(
        "canary rolled back",
        canary_rolled_back,
        (audited("canary.rolled_back", CANARY_LABEL, "fulfilment exceptions"),),
    ),
    # Channel holds and SKU mappings in the admin.
    Change(
        "channel held",
        lambda scene: channel_hold_changed(scene, "hold_orders"),
        (Entry("channel.orders_held", "channel", actor="olivia", reason="hold_orders now"),),
    ),
    Change(
        "channel released",
        lambda scene: channel_hold_changed(scene, "release_orders"),
        (Entry("channel.orders_released", "channel", actor="olivia", reason="release_orders now"),),
    ),
    Change(
        "mapping added",
        mapping_added,
        (
            Entry(
                "mapping.created",
                "channel_sku_mapping",
                actor="olivia",
                reason="admin",
                before=False,
            ),
        ),
    ),
    Change(
        "mapping changed",
        mapping_changed,
        (Entry("mapping.updated", "channel_sku_mapping", actor="olivia", reason="admin"),),
    ),
]


@pytest.mark.parametrize("change", CHANGES, ids=[change.name for change in CHANGES])
def test_change_audited(change: Change, request: pytest.FixtureRequest):
    scene = Scene(request)
    scene.use("default_policies")
    last_id = AuditEntry.objects.aggregate(last=Max("id"))["last"] or 0
    started = timezone.now()

    targets = change.perform(scene)

    finished = timezone.now()
    new = AuditEntry.objects.filter(id__gt=last_id)
    written = list(new.order_by("id").values_list("action", "target_type", "target_id"))
    for expected in change.entries:
        target_id = targets[expected.target_type] if isinstance(targets, dict) else targets
        entries = list(
            new.filter(
                action=expected.action,
                target_type=expected.target_type,
                target_id=str(target_id),
            )
        )
        assert len(entries) == 1, f"no single {expected.action} of {target_id}; got {written}"
        entry_check(entries[0], expected, started=started, finished=finished)


def entry_check(entry: AuditEntry, expected: Entry, *, started, finished) -> None:
    assert entry.actor_label == expected.actor, expected.action
    if entry.actor_kind == ActorKind.USER:
        assert entry.actor.get_username() == expected.actor
    else:
        assert entry.actor_kind == ActorKind.SYSTEM
        assert entry.actor_id is None
    assert started <= entry.created_at <= finished
    if expected.reason is not None:
        assert expected.reason in entry.reason, expected.action
    assert entry.after is not None, expected.action
    if expected.before:
        assert entry.before is not None, expected.action
        assert entry.before != entry.after, expected.action
