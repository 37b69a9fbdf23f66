"""Give the role groups their inventory permissions."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLE_PERMISSIONS = {
    "cs_agent": [
        "inventory.view_location",
        "inventory.view_stocklevel",
    ],
    "cs_manager": [
        "inventory.view_location",
        "inventory.view_stocklevel",
        "inventory.view_reservation",
        "inventory.view_stockevent",
    ],
    "ops_manager": [
        "inventory.view_location",
        "inventory.add_location",
        "inventory.change_location",
        "inventory.view_stocklevel",
        "inventory.view_stockevent",
        "inventory.view_reservation",
        "inventory.view_inventorydiscrepancy",
        "inventory.add_inventorydiscrepancy",
    ],
    # Connectors post stock events and may read back what stock OMS Guard holds.
    "integration": [
        "inventory.add_stockevent",
        "inventory.view_location",
        "inventory.view_stocklevel",
    ],
}


def add_role_permissions(apps, schema_editor):
    # Permissions are normally created after all migrations ran; create this app's now so the
    # groups can reference them on a fresh database.
    app_config = apps.get_app_config("inventory")
    previous = getattr(app_config, "models_module", None)
    app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0)
    finally:
        app_config.models_module = previous

    Group = apps.get_model("auth", "Group")
    for role, codes in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*_permissions(apps, codes))


def remove_role_permissions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for role, codes in ROLE_PERMISSIONS.items():
        group = Group.objects.filter(name=role).first()
        if group is not None:
            group.permissions.remove(*_permissions(apps, codes))


def _permissions(apps, codes: list[str]) -> list:
    Permission = apps.get_model("auth", "Permission")
    permissions = []
    for code in codes:
        app_label, codename = code.split(".")
        permissions.append(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return permissions


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("reviews", "0002_roles"),
        ("inventory", "0001_initial"),
    ]

    operations = [migrations.RunPython(add_role_permissions, remove_role_permissions)]
