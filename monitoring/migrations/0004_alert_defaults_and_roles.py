"""Grant the alert permissions to the roles and load the default alert rules.

The rules cover every threshold of the product brief. They are loaded by name with
get_or_create, so a rule an ops manager already edited is left as it is.

Windows and minimum samples are sized for a mid-size shop of about 100 orders a day per
channel: each rule is judged at least once a day. A smaller shop gets "too little data" for
the rate rules until it lowers min_sample or widens the window.
"""

from decimal import Decimal

from django.db import migrations

from omsguard.role_grants import role_permissions_grant, role_permissions_revoke

ROLE_PERMISSIONS = {
    "ops_manager": [
        "monitoring.view_alertrule",
        "monitoring.add_alertrule",
        "monitoring.change_alertrule",
        "monitoring.view_notificationtarget",
        "monitoring.add_notificationtarget",
        "monitoring.change_notificationtarget",
        "monitoring.view_alert",
        "monitoring.change_alert",
        "monitoring.view_alertevent",
        "monitoring.view_alertnotification",
        "monitoring.view_monitoringsettings",
        "monitoring.change_monitoringsettings",
        "monitoring.view_dashboard",
    ],
    # change_alert lets a user acknowledge, silence and run an alert's remediation.
    "cs_manager": [
        "monitoring.view_alert",
        "monitoring.change_alert",
        "monitoring.view_alertevent",
        "monitoring.view_dashboard",
    ],
    "leadership": ["monitoring.view_dashboard", "monitoring.view_alert"],
}

DEFAULT_RULES = [
    {
        "name": "Duplicate shipments above 5 per 1,000 orders",
        "description": "Shipments that repeat an earlier shipment of the same order cost "
        "money and confuse customers. Each channel is judged on its own.",
        "kpi": "duplicate_shipment_rate",
        "kind": "rate_per_1000",
        "threshold": Decimal("5"),
        "window_minutes": 1440,
        "min_sample": 100,
        "scope": "per_channel",
        "severity": "critical",
        "owner_group": "ops_manager",
        "remediation": "hold_channel",
        "remediation_target": "",
        "runbook": (
            "1. Hold the channel's orders with the button on this alert.\n"
            "2. Open the duplicate shipments on the dashboard and list the orders shipped "
            "twice.\n"
            "3. Cancel the second label with the carrier for every parcel not yet picked "
            "up.\n"
            "4. Check the shipping connector for retried label requests and fix the cause.\n"
            "5. Release the channel's hold in the admin (Channels)."
        ),
    },
    {
        "name": "Carrier mix more than 30 % off its 7-day baseline",
        "description": "The share of shipments of a carrier with at least 10 % of them moved "
        "more than 30 % from its share over the 7 days before: carrier selection may have gone "
        "wrong.",
        "kpi": "carrier_mix",
        "kind": "baseline_deviation",
        "threshold": Decimal("30"),
        "window_minutes": 1440,
        "baseline_days": 7,
        "min_sample": 50,
        "scope": "all",
        "severity": "actionable",
        "owner_group": "ops_manager",
        "remediation": "open_breaker",
        "remediation_target": "select_carrier",
        "runbook": (
            "1. Open the circuit breaker of carrier selection with the button on this "
            "alert.\n"
            "2. Compare the carrier shares on the dashboard with the 7 days before.\n"
            "3. Check recent carrier rate changes and the carrier recommender's model "
            "version.\n"
            "4. Close the breaker under Guardrails once the mix is explained or fixed."
        ),
    },
    {
        "name": "Disagreement rate above 2 %",
        "description": "Reviewers reject or revise more than 2 % of one action's AI "
        "proposals. Each action is judged on its own.",
        "kpi": "disagreement_rate",
        "kind": "threshold",
        "threshold": Decimal("2"),
        # A week: one action gets a few reviews a day at a mid-size shop, and 2 % needs 50
        # reviews or more to mean anything.
        "window_minutes": 10080,
        "min_sample": 50,
        "dimension": "*",
        "scope": "all",
        "severity": "actionable",
        "owner_group": "ops_manager",
        "remediation": "open_breaker",
        "remediation_target": "",
        "runbook": (
            "1. Open the circuit breaker of the action with the button on this alert.\n"
            "2. Read the rejected and revised proposals in the review queue's history.\n"
            "3. Label the errors (cause, impact, corrective action).\n"
            "4. Fix the model or the policy, then close the breaker under Guardrails."
        ),
    },
    {
        "name": "Fulfilment error rate above 0.2 %",
        "description": "Pick, pack and ship mistakes above 0.2 % of a channel's shipments.",
        "kpi": "fulfilment_error_rate",
        "kind": "threshold",
        "threshold": Decimal("0.2"),
        "window_minutes": 1440,
        "min_sample": 100,
        "scope": "per_channel",
        "severity": "actionable",
        "owner_group": "ops_manager",
        "remediation": "hold_channel",
        "remediation_target": "",
        "runbook": (
            "1. Hold the channel's orders with the button on this alert.\n"
            "2. Open the fulfilment exceptions on the dashboard and group them by stage.\n"
            "3. Ask the warehouse about the stage with the most mistakes.\n"
            "4. Release the channel's hold in the admin (Channels) once the cause is fixed."
        ),
    },
    {
        "name": "Address queue: oldest item older than 30 minutes",
        "description": "An address item waited more than 30 minutes, so its order is held "
        "and may miss its ship date.",
        "kpi": "queue_oldest_age",
        "kind": "threshold",
        "threshold": Decimal("1800"),
        "window_minutes": 60,
        "min_sample": 1,
        "dimension": "address",
        "scope": "all",
        "severity": "critical",
        "owner_group": "cs_manager",
        "remediation": "escalate_queue",
        "remediation_target": "address",
        "runbook": (
            "1. Escalate the address items open longer than 30 minutes to the CS managers "
            "with the button on this alert.\n"
            "2. Open the address queue and decide the oldest items first.\n"
            "3. Ask more agents to work the queue until it is under 30 minutes.\n"
            "4. Look for the cause of the backlog, e.g. a carrier's address validation "
            "failing for every order."
        ),
    },
    {
        "name": "Substitution queue: oldest item older than 60 minutes",
        "description": "A substitution item waited more than an hour to be decided.",
        "kpi": "queue_oldest_age",
        "kind": "threshold",
        "threshold": Decimal("3600"),
        "window_minutes": 60,
        "min_sample": 1,
        "dimension": "substitution",
        "scope": "all",
        "severity": "actionable",
        "owner_group": "cs_manager",
        "remediation": "escalate_queue",
        "remediation_target": "substitution",
        "runbook": (
            "1. Escalate the substitution items open longer than an hour to the CS managers "
            "with the button on this alert.\n"
            "2. Open the substitution queue and decide the oldest items first.\n"
            "3. Ask more agents to work the queue until it is under an hour.\n"
            "4. Leave the substitution breaker closed: opening it sends every substitution "
            "to this queue."
        ),
    },
    {
        "name": "Marketplace cancellations 50 % above their 7-day baseline",
        "description": "A channel cancels orders at a rate more than 50 % above its 7-day "
        "baseline, an early sign of misrouting. A drop does not fire.",
        "kpi": "cancellation_rate",
        "kind": "baseline_deviation",
        "comparison": "above",
        "threshold": Decimal("50"),
        "window_minutes": 1440,
        "baseline_days": 7,
        "min_sample": 50,
        "scope": "per_channel",
        "severity": "informational",
        "owner_group": "ops_manager",
        # Not hold_channel: held orders do not ship, so the marketplace cancels even more.
        "remediation": "open_breaker",
        "remediation_target": "select_carrier",
        "runbook": (
            "1. Open the circuit breaker of carrier selection with the button on this alert, "
            "so every carrier choice goes to a person. Do not hold the channel: held orders "
            "do not ship, and late orders are cancelled.\n"
            "2. Open the cancelled orders on the dashboard and look for a common carrier, "
            "location or SKU.\n"
            "3. Check the channel's recent routing and carrier decisions.\n"
            "4. Close the breaker under Guardrails once the cause is fixed."
        ),
    },
    {
        "name": "Marketplace chargebacks 50 % above their 7-day baseline",
        "description": "A channel receives chargebacks at a rate more than 50 % above its "
        "7-day baseline, or any chargebacks after a week with none: an early sign of "
        "misrouting.",
        "kpi": "chargeback_rate",
        "kind": "baseline_deviation",
        "comparison": "above",
        "threshold": Decimal("50"),
        "window_minutes": 1440,
        "baseline_days": 7,
        "min_sample": 50,
        "scope": "per_channel",
        "severity": "informational",
        "owner_group": "ops_manager",
        # Not hold_channel: held orders do not ship, which brings more disputes, not fewer.
        "remediation": "open_breaker",
        "remediation_target": "select_carrier",
        "runbook": (
            "1. Open the circuit breaker of carrier selection with the button on this alert, "
            "so every carrier choice goes to a person. Do not hold the channel: held orders "
            "do not ship.\n"
            "2. Open the chargebacks on the dashboard and read their reason codes.\n"
            "3. Check whether the orders behind them were late, lost or sent to the wrong "
            "address.\n"
            "4. Close the breaker under Guardrails once the cause is fixed."
        ),
    },
    {
        "name": "Order processing errors above 100 per 10,000 orders",
        "description": "More than 1 % of a channel's orders were held or failed in processing.",
        "kpi": "order_error_rate",
        "kind": "threshold",
        "threshold": Decimal("100"),
        "window_minutes": 1440,
        "min_sample": 100,
        "scope": "per_channel",
        "severity": "actionable",
        "owner_group": "ops_manager",
        "remediation": "hold_channel",
        "remediation_target": "",
        "runbook": (
            "1. Hold the channel's orders with the button on this alert.\n"
            "2. Open the held orders on the dashboard and read why each one is held.\n"
            "3. Fix the cause (an unmapped SKU, an unknown carrier code, a connector "
            "failure).\n"
            "4. Release the channel's hold in the admin (Channels)."
        ),
    },
]


def grant_monitoring_permissions(apps, schema_editor):
    role_permissions_grant(apps, ROLE_PERMISSIONS)


def revoke_monitoring_permissions(apps, schema_editor):
    role_permissions_revoke(apps, ROLE_PERMISSIONS)


def create_default_rules(apps, schema_editor):
    AlertRule = apps.get_model("monitoring", "AlertRule")
    Group = apps.get_model("auth", "Group")
    for rule in DEFAULT_RULES:
        fields = dict(rule)
        name = fields.pop("name")
        fields["owner_group"], _ = Group.objects.get_or_create(name=fields["owner_group"])
        AlertRule.objects.get_or_create(name=name, defaults=fields)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("catalog", "0006_channel_orders_held"),
        ("monitoring", "0003_kpis_rules_notifications"),
        ("reviews", "0002_roles"),
    ]

    # Reversing keeps the rules: alerts may already point at them.
    operations = [
        migrations.RunPython(grant_monitoring_permissions, revoke_monitoring_permissions),
        migrations.RunPython(create_default_rules, migrations.RunPython.noop),
    ]
