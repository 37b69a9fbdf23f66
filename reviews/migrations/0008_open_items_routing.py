"""Give the items that were open before deadlines and approver roles existed their routing.

New items get it when they open; without this, an AI proposal opened earlier would have no
approver role and anyone with the decide permission could approve it.
"""

from datetime import timedelta

from django.db import migrations

FALLBACK_APPROVER = "cs_manager"
DEFAULT_SLA_MINUTES = 240
# The action whose policy sets the deadline and approver of a hygiene item.
HYGIENE_POLICY_ACTIONS = {"address": "correct_shipping_address", "out_of_stock": "substitute_sku"}


def routing_fill(apps, schema_editor):
    ReviewItem = apps.get_model("reviews", "ReviewItem")
    Decision = apps.get_model("guardrails", "Decision")
    Policy = apps.get_model("guardrails", "Policy")
    GuardrailSettings = apps.get_model("guardrails", "GuardrailSettings")

    settings_row = GuardrailSettings.objects.filter(pk=1).first()
    default_minutes = settings_row.review_default_sla_minutes if settings_row else None
    default_minutes = default_minutes or DEFAULT_SLA_MINUTES
    decisions = {
        decision.review_item_id: decision
        for decision in Decision.objects.filter(
            review_item__status="open", review_item__order_version__isnull=True
        ).select_related(
            "action", "policy_version__approver_group", "policy_version__escalation_group"
        )
    }
    live_versions = {
        policy.action.code: policy.live_version
        for policy in Policy.objects.filter(
            channel__isnull=True, live_version__isnull=False
        ).select_related("action", "live_version__approver_group")
    }

    items = ReviewItem.objects.filter(status="open", order_version__isnull=True).select_related(
        "order"
    )
    for item in items.iterator():
        decision = decisions.get(item.pk)
        version = None
        if decision is not None:
            version = decision.policy_version
            item.action_code = decision.action.code
            item.confidence = decision.confidence
            item.approver_group = (
                version.approver_group.name
                if version is not None and version.approver_group_id
                else FALLBACK_APPROVER
            )
        elif item.kind in HYGIENE_POLICY_ACTIONS:
            version = live_versions.get(HYGIENE_POLICY_ACTIONS[item.kind])
            if item.kind == "address" and version is not None and version.approver_group_id:
                item.approver_group = version.approver_group.name

        item.order_version = item.order.version if item.order_id else None
        item.sla_minutes = version.review_sla_minutes if version is not None else default_minutes
        item.on_sla_breach = version.on_sla_breach if version is not None else "hold_order"
        item.due_at = item.created_at + timedelta(minutes=item.sla_minutes)
        item.save(
            update_fields=[
                "action_code",
                "confidence",
                "approver_group",
                "order_version",
                "sla_minutes",
                "on_sla_breach",
                "due_at",
            ]
        )


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0007_queue_context_sla_claims_confirmations"),
        ("guardrails", "0005_sampling_and_review_settings"),
    ]

    operations = [migrations.RunPython(routing_fill, migrations.RunPython.noop)]
