"""Let ops managers maintain expected replenishments, and CS roles read them."""

from django.db import migrations

from omsguard.role_grants import role_permissions_grant, role_permissions_revoke

ROLE_PERMISSIONS = {
    "ops_manager": [
        "inventory.view_replenishment",
        "inventory.add_replenishment",
        "inventory.change_replenishment",
        "inventory.delete_replenishment",
    ],
    "cs_manager": ["inventory.view_replenishment"],
    "cs_agent": ["inventory.view_replenishment"],
}


def grant_replenishment(apps, schema_editor):
    role_permissions_grant(apps, ROLE_PERMISSIONS)


def revoke_replenishment(apps, schema_editor):
    role_permissions_revoke(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [("inventory", "0005_replenishment"), ("reviews", "0002_roles")]

    operations = [migrations.RunPython(grant_replenishment, revoke_replenishment)]
