"""Let ops managers edit carriers, services and code mappings, and CS managers view them."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

CARRIER_MODELS = ("carrier", "carrierservice", "carriercodemapping")
ROLE_PERMISSIONS = {
    "ops_manager": [
        f"{action}_{model}"
        for model in CARRIER_MODELS
        for action in ("view", "add", "change", "delete")
    ],
    "cs_manager": [f"view_{model}" for model in CARRIER_MODELS],
}


def grant_carrier_permissions(apps, schema_editor):
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


def revoke_carrier_permissions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_PERMISSIONS.items():
        for group in Group.objects.filter(name=role):
            group.permissions.remove(
                *Permission.objects.filter(
                    content_type__app_label="orders", codename__in=codenames
                )
            )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0004_carrier_reference_data"),
        ("reviews", "0002_roles"),
    ]

    operations = [
        migrations.RunPython(grant_carrier_permissions, revoke_carrier_permissions)
    ]
