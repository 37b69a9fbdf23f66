"""Let ops managers replay dead-lettered and failed deliveries from the admin.

The delivery admin is read-only, so orders.change_delivery grants only the replay action
(orders.admin.REPLAY_PERMISSION); every replay is audited as delivery.replayed.
"""

from django.db import migrations

from omsguard.role_grants import role_permissions_grant, role_permissions_revoke

ROLE_PERMISSIONS = {"ops_manager": ["orders.change_delivery"]}


def grant_replay_permission(apps, schema_editor):
    role_permissions_grant(apps, ROLE_PERMISSIONS)


def revoke_replay_permission(apps, schema_editor):
    role_permissions_revoke(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0013_fulfilment_roles"),
        ("reviews", "0002_roles"),
    ]

    operations = [
        migrations.RunPython(grant_replay_permission, revoke_replay_permission),
    ]
