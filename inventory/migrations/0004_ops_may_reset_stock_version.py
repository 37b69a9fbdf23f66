"""Let ops managers reset a stock level's applied version."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PERMISSION = "reset_version_stocklevel"


def grant_reset(apps, schema_editor):
    app_config = apps.get_app_config("inventory")
    previous = getattr(app_config, "models_module", None)
    app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0)
    finally:
        app_config.models_module = previous

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.get(content_type__app_label="inventory", codename=PERMISSION)
    group, _ = Group.objects.get_or_create(name="ops_manager")
    group.permissions.add(permission)


def revoke_reset(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    group = Group.objects.filter(name="ops_manager").first()
    if group is not None:
        group.permissions.remove(*group.permissions.filter(codename=PERMISSION))


class Migration(migrations.Migration):
    dependencies = [("inventory", "0003_stock_version_reset_permission")]

    operations = [migrations.RunPython(grant_reset, revoke_reset)]
