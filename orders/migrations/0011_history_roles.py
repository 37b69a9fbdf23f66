"""Grant the order history permissions: exports to CS and ops managers, full customer data
to CS managers."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLE_PERMISSIONS = {
    "cs_manager": ("export_history", "view_customer_pii"),
    "ops_manager": ("export_history",),
}


def grant_history_permissions(apps, schema_editor):
    # Permissions are normally created after all migrations ran; create them now so the
    # groups can reference them on a fresh database.
    app_config = apps.get_app_config("orders")
    previous = getattr(app_config, "models_module", None)
    app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0)
    finally:
        app_config.models_module = previous

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="orders", codename__in=codenames)
        )


def revoke_history_permissions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_PERMISSIONS.items():
        for group in Group.objects.filter(name=role):
            group.permissions.remove(
                *Permission.objects.filter(content_type__app_label="orders", codename__in=codenames)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0010_order_version"),
        ("reviews", "0002_roles"),
    ]

    operations = [
        migrations.RunPython(grant_history_permissions, revoke_history_permissions),
    ]
