"""The authorization matrix: who may use each mutating endpoint and UI action.

One row per endpoint, page action or admin action that changes state, plus the reads that
integrations must only see for their own channels. Each row names the roles it allows. Every
other role is denied, except the roles listed as `hidden`: for them the object belongs to
another channel, so a detail or an action on it is not found (404) and a list leaves it out.

tests/security/test_authz_matrix.py runs every row for every role and checks the response
and the row's effect, and it fails for any URL that accepts an unsafe method but has no row or
exemption here. docs/security/roles.md is this table in prose, kept in step by hand; where
they differ, this table is right.
"""

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ANONYMOUS = "anonymous"
    # Logged in, in no group.
    OUTSIDER = "outsider"
    CS_AGENT = "cs_agent"
    # CS and ops managers are staff, as seed_demo makes them, so they may open the admin.
    CS_MANAGER = "cs_manager"
    OPS_MANAGER = "ops_manager"
    LEADERSHIP = "leadership"
    # Granted the channels that the rows' objects belong to.
    INTEGRATION = "integration"
    # An integration granted only another channel.
    INTEGRATION_OTHER = "integration_other_channel"


class Surface(StrEnum):
    """How a row is called, and so what a denial looks like."""

    # /api/v1/ with an API token: 401 without one, 403 when denied.
    API = "api"
    # Pages and their HTMX actions with a session: a redirect to the login page without one,
    # 403 when denied.
    UI = "ui"
    # The Django admin: a redirect to the admin login for non-staff users. Staff users
    # without the permission get 403, or the action is refused with a message and a
    # redirect; the test checks that nothing changed.
    ADMIN = "admin"
    # No login by design.
    PUBLIC = "public"


class Outcome(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    HIDDEN = "hidden"


@dataclass(frozen=True)
class Row:
    key: str
    # The URL's name as reverse() takes it, with its namespace.
    url_name: str
    method: str
    surface: Surface
    allow: frozenset[Role]
    hidden: frozenset[Role] = frozenset()
    # The error code a denied integration of another channel gets, when the API names it.
    other_channel_code: str = ""
    # Why an allowed request cannot show its effect, when it cannot; the test then only
    # checks that the request reached the view (a 2xx, or a 400, 409 or 422 from validation).
    reaches_only: str = ""
    note: str = ""

    def outcome(self, role: Role) -> Outcome:
        if role in self.allow:
            return Outcome.ALLOW
        if role in self.hidden:
            return Outcome.HIDDEN
        return Outcome.DENY


R = Role
EVERYONE = frozenset(Role)
INTEGRATION = frozenset({R.INTEGRATION})
OPS = frozenset({R.OPS_MANAGER})
MANAGERS = frozenset({R.CS_MANAGER, R.OPS_MANAGER})
# reviews.decide_reviewitem; ops managers edit the rules but do not work the queues.
DECIDERS = frozenset({R.CS_AGENT, R.CS_MANAGER})
# reviews.add_errorlabel
ITEM_LABELLERS = frozenset({R.CS_AGENT, R.CS_MANAGER, R.OPS_MANAGER})
OTHER_CHANNEL = frozenset({R.INTEGRATION_OTHER})
CHANNEL_NOT_ALLOWED = "channel_not_allowed"


def api(key: str, url_name: str, method: str, allow: frozenset[Role], **fields) -> Row:
    return Row(key, url_name, method, Surface.API, allow, **fields)


def ui(key: str, url_name: str, allow: frozenset[Role], **fields) -> Row:
    return Row(key, url_name, "POST", Surface.UI, allow, **fields)


def admin(key: str, url_name: str, allow: frozenset[Role], **fields) -> Row:
    return Row(key, url_name, "POST", Surface.ADMIN, allow, **fields)


def channel_write(key: str, url_name: str, method: str = "POST", **fields) -> Row:
    """An integration's write on the channel named in the body: another channel gets 403."""
    return api(key, url_name, method, INTEGRATION, other_channel_code=CHANNEL_NOT_ALLOWED, **fields)


def channel_read(key: str, url_name: str, allow: frozenset[Role], **fields) -> Row:
    """A read of channel data: an integration of another channel does not find the object."""
    return api(key, url_name, "GET", allow, hidden=OTHER_CHANNEL, **fields)


ROWS: tuple[Row, ...] = (
    # --- REST API: ingestion and fulfilment facts, integrations only, channel-scoped -------
    channel_write("api.order.create", "order-list", note="canonical order"),
    channel_write("api.marketplace.ingest", "marketplace-orders", note="Amazon or eBay orders"),
    channel_write("api.shipment.create", "shipment-list"),
    api(
        "api.shipment.status",
        "shipment-detail",
        "PATCH",
        INTEGRATION,
        hidden=OTHER_CHANNEL,
        note="the shipment is named in the URL, so another channel's is not found",
    ),
    channel_write("api.fulfilment_exception.create", "fulfilment-exception-list"),
    channel_write("api.return.create", "return-list"),
    channel_write("api.chargeback.create", "chargeback-list"),
    api(
        "api.stock_event.create",
        "stock-event-list",
        "POST",
        frozenset({R.INTEGRATION, R.INTEGRATION_OTHER}),
        note="stock belongs to locations, which no channel owns, so every integration may post",
    ),
    api("api.discrepancy.create", "inventory-discrepancy-list", "POST", OPS),
    # --- REST API: AI agents ------------------------------------------------------------------
    channel_write("api.decision.propose", "decision-list"),
    api("api.order.shortage", "order-shortages", "POST", INTEGRATION, hidden=OTHER_CHANNEL),
    api(
        "api.order.carrier_recommendation",
        "order-carrier-recommendation",
        "POST",
        INTEGRATION,
        hidden=OTHER_CHANNEL,
    ),
    channel_write(
        "api.breaker.report_degradation",
        "breaker-report-degradation",
        note="on a channel's breaker; action and model breakers belong to no channel",
    ),
    channel_write("api.breaker.report_recovery", "breaker-report-recovery"),
    # --- REST API: people ---------------------------------------------------------------------
    api("api.decision.revert", "decision-revert", "POST", MANAGERS),
    api("api.decision.label", "decision-label", "POST", MANAGERS),
    api(
        "api.error_label.create",
        "error-label-list",
        "POST",
        ITEM_LABELLERS,
        note="on a review item; a label on a decision needs guardrails.label_decision",
    ),
    api("api.review_item.accept", "review-item-accept", "POST", DECIDERS),
    api("api.review_item.reject", "review-item-reject", "POST", DECIDERS),
    api(
        "api.review_item.revise",
        "review-item-revise",
        "POST",
        frozenset({R.CS_MANAGER}),
        note="an address item: its policy names cs_manager as the approver",
    ),
    api("api.review_item.claim", "review-item-claim", "POST", DECIDERS),
    api(
        "api.review_item.release",
        "review-item-release",
        "POST",
        DECIDERS,
        note="someone else's claim that ran out",
    ),
    api("api.breaker.open", "breaker-open", "POST", OPS),
    api("api.breaker.close", "breaker-close", "POST", OPS),
    api("api.version.create", "version-list", "POST", OPS),
    api("api.version.activate", "version-activate", "POST", OPS),
    api("api.canary.create", "canary-list", "POST", OPS),
    api("api.canary.share", "canary-share", "POST", OPS),
    api("api.canary.pause", "canary-pause", "POST", OPS),
    api("api.canary.resume", "canary-resume", "POST", OPS),
    api("api.canary.stop", "canary-stop", "POST", OPS),
    api("api.canary.promote", "canary-promote", "POST", OPS),
    # --- REST API: reads of channel data ------------------------------------------------------
    channel_read(
        "api.order.detail",
        "order-detail",
        frozenset({R.CS_AGENT, R.CS_MANAGER, R.OPS_MANAGER, R.INTEGRATION}),
    ),
    channel_read(
        "api.order.list",
        "order-list",
        frozenset({R.CS_AGENT, R.CS_MANAGER, R.OPS_MANAGER, R.INTEGRATION}),
    ),
    channel_read(
        "api.delivery.detail",
        "delivery-detail",
        frozenset({R.CS_MANAGER, R.OPS_MANAGER, R.INTEGRATION}),
        note="people see deliveries as staff; cs_agent has no orders.view_delivery",
    ),
    channel_read(
        "api.delivery.list",
        "delivery-list",
        frozenset({R.CS_MANAGER, R.OPS_MANAGER, R.INTEGRATION}),
    ),
    channel_read(
        "api.decision.detail",
        "decision-detail",
        frozenset({R.CS_AGENT, R.CS_MANAGER, R.OPS_MANAGER, R.INTEGRATION}),
    ),
    channel_read(
        "api.decision.list",
        "decision-list",
        frozenset({R.CS_AGENT, R.CS_MANAGER, R.OPS_MANAGER, R.INTEGRATION}),
    ),
    channel_read(
        "api.review_item.detail",
        "review-item-detail",
        frozenset({R.CS_AGENT, R.CS_MANAGER, R.OPS_MANAGER, R.INTEGRATION}),
    ),
    channel_read(
        "api.review_item.list",
        "review-item-list",
        frozenset({R.CS_AGENT, R.CS_MANAGER, R.OPS_MANAGER, R.INTEGRATION}),
    ),
    channel_read(
        "api.shipment.detail",
        "shipment-detail",
        frozenset({R.CS_MANAGER, R.OPS_MANAGER, R.INTEGRATION}),
    ),
    channel_read(
        "api.shipment.list",
        "shipment-list",
        frozenset({R.CS_MANAGER, R.OPS_MANAGER, R.INTEGRATION}),
    ),
    channel_read(
        "api.breaker.list",
        "breaker-list",
        frozenset({R.CS_MANAGER, R.OPS_MANAGER, R.INTEGRATION}),
        note="a channel's breaker; action and model breakers are listed for every integration",
    ),
    channel_read("api.canary.assignment", "canary-assignment", INTEGRATION),
    # --- Pages: review queue, labels, feedback -----------------------------------------------
    ui("ui.review.accept", "reviews:accept", DECIDERS),
    ui("ui.review.reject", "reviews:reject", DECIDERS),
    ui("ui.review.revise", "reviews:revise", frozenset({R.CS_MANAGER}), note="an address item"),
    ui("ui.review.claim", "reviews:claim", DECIDERS),
    ui("ui.review.release", "reviews:release", DECIDERS, note="someone else's expired claim"),
    ui("ui.label.item", "labels:item_add", ITEM_LABELLERS),
    ui("ui.label.decision", "labels:decision_add", MANAGERS),
    ui("ui.fix.create", "feedback:fix-create", OPS),
    ui("ui.fix.update", "feedback:fix-update", OPS),
    ui("ui.order.revert", "orders:history-revert", MANAGERS),
    # --- Pages: rollouts, calibration, alerts --------------------------------------------------
    ui("ui.canary.share", "rollouts:share", OPS),
    ui("ui.canary.pause", "rollouts:pause", OPS),
    ui("ui.canary.resume", "rollouts:resume", OPS),
    ui("ui.canary.stop", "rollouts:stop", OPS),
    ui("ui.canary.promote", "rollouts:promote", OPS),
    ui(
        "ui.calibration.draft",
        "guardrails:calibration_draft",
        OPS,
        reaches_only="a draft needs weeks of labelled decisions; without them the page "
        "answers 409 not draftable",
    ),
    ui("ui.alert.acknowledge", "alerts:acknowledge", MANAGERS),
    ui("ui.alert.silence", "alerts:silence", MANAGERS),
    ui("ui.alert.unsilence", "alerts:unsilence", MANAGERS),
    ui("ui.alert.remediate", "alerts:remediate", MANAGERS),
    # --- The customer's page ----------------------------------------------------------------
    Row(
        "public.address_confirm",
        "confirm:address",
        "POST",
        Surface.PUBLIC,
        EVERYONE,
        note="public by design: the signed link in the customer's email is the credential",
    ),
    # --- Admin actions --------------------------------------------------------------------
    admin("admin.policy.publish", "admin:guardrails_policyversion_changelist", OPS),
    admin(
        "admin.delivery.replay",
        "admin:orders_delivery_replay",
        OPS,
        note="needs orders.change_delivery, which only ops managers have. Review agents "
        "replay a failed delivery by accepting its review item.",
    ),
    admin("admin.channel.edit", "admin:catalog_channel_change", OPS),
    admin("admin.channel.hold", "admin:catalog_channel_changelist", OPS),
    admin("admin.breaker.close", "admin:guardrails_breaker_changelist", OPS),
    admin("admin.mapping.add", "admin:catalog_channelskumapping_add", MANAGERS),
    admin("admin.sku.import", "admin:catalog_sku_import", OPS),
)


# URLs that accept an unsafe method and have no row, each with the reason.
EXEMPT_URL_NAMES: dict[str, str] = {
    # Signed by the channel's secret, not by a user; tests/channels and tests/orders cover
    # the signature checks.
    "webhooks:shopify": "webhook: authenticated by its signature",
    "webhooks:woocommerce": "webhook: authenticated by its signature",
    "webhooks:square": "webhook: authenticated by its signature",
    # Logging in and out is open to everyone; django-axes throttles failed logins.
    "login": "login form",
    "logout": "logout",
    "admin:login": "admin login form",
    "admin:logout": "admin logout",
    "admin:password_change": "changes the user's own password",
    # Served only with OMSGUARD_BENCH_ENDPOINTS, which is off everywhere but the bench.
    "bench-store-body": "bench only",
    "bench-insert-row": "bench only",
}
# Admin URLs that every ModelAdmin has. The admin checks the model's add, change, delete
# and view permissions on them, so a row per model would only test Django. The admin
# actions and custom admin views that matter have rows above.
ADMIN_GENERIC_SUFFIXES = ("_changelist", "_add", "_change", "_delete", "_history")
# Routes without a name that accept any method.
EXEMPT_ROUTES: dict[str, str] = {
    "^api/": "JSON 404 for unknown API paths; reads and changes nothing",
    "admin/(?P<url>.*)$": "the admin's catch-all: a redirect to add a slash, or 404",
}

# Function views without a method decorator that only read. The completeness test cannot
# see their methods, so it takes their word from this list.
READ_ONLY_URL_NAMES: frozenset[str] = frozenset(
    {
        "home",
        "favicon",
        "reviews:queue",
        "reviews:queue_kind",
        "reviews:item",
        "orders:detail",
        "orders:history",
        "orders:history-json",
        "orders:history-csv",
        "orders:history-export",
        "catalog:import_list",
        "catalog:import_job",
        "catalog:import_progress",
        "catalog:import_errors",
        "guardrails:coverage",
        "guardrails:simulate",
        "guardrails:calibration",
        "alerts:list",
        "alerts:detail",
        "rollouts:list",
        "rollouts:canary",
        "rollouts:version",
        "metrics:metrics",
        # The admin site's own pages.
        "admin:index",
        "admin:app_list",
        "admin:jsi18n",
        "admin:autocomplete",
        "admin:view_on_site",
        "admin:password_change_done",
    }
)
