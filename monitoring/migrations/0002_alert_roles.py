"""Let ops managers and CS managers read alerts; only services raise and resolve them."""

from django.db import migrations

from omsguard.role_grants import role_permissions_grant, role_permissions_revoke

ROLE_PERMISSIONS = {
    "ops_manager": ["monitoring.view_alert"],
    "cs_manager": ["monitoring.view_alert"],
}


def grant_alert_view(apps, schema_editor):
    role_permissions_grant(apps, ROLE_PERMISSIONS)


def revoke_alert_view(apps, schema_editor):
    role_permissions_revoke(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0001_alerts"), ("reviews", "0002_roles")]

    operations = [migrations.RunPython(grant_alert_view, revoke_alert_view)]
