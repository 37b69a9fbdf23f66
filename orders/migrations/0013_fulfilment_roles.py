"""Let integrations report shipments, fulfilment exceptions, returns and chargebacks, and the
managers read them.

Ops managers hold and release a channel's orders with catalog.change_channel, which the role
migration of reviews already grants them.
"""

from django.db import migrations

from omsguard.role_grants import role_permissions_grant, role_permissions_revoke

FACT_MODELS = ("shipment", "fulfilmentexception", "orderreturn", "chargeback")

ROLE_PERMISSIONS = {
    "integration": [
        *(f"orders.{verb}_{model}" for model in FACT_MODELS for verb in ("add", "view")),
        # A shipment's delivery status (PATCH /api/v1/shipments/<id>/).
        "orders.change_shipment",
    ],
    "ops_manager": [f"orders.view_{model}" for model in FACT_MODELS],
    "cs_manager": [f"orders.view_{model}" for model in FACT_MODELS],
}


def grant_fulfilment_permissions(apps, schema_editor):
    role_permissions_grant(apps, ROLE_PERMISSIONS)


def revoke_fulfilment_permissions(apps, schema_editor):
    role_permissions_revoke(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0012_shipments_returns_chargebacks"),
        ("reviews", "0002_roles"),
    ]

    operations = [
        migrations.RunPython(grant_fulfilment_permissions, revoke_fulfilment_permissions),
    ]
