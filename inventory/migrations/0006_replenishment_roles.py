"""Let ops managers maintain expected replenishments, and CS roles read them."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLE_CODENAMES = {
    "ops_manager": (
        "view_replenishment",
        "add_replenishment",
        "change_replenishment",
        "delete_replenishment",
    ),
    "cs_manager": ("view_replenishment",),
    "cs_agent": ("view_replenishment",),
}


def grant_replenishment(apps, schema_editor):
    # Permissions are normally created after all migrations ran; create them now so the
    # groups can reference them on a fresh database.
    app_config = apps.get_app_config("inventory")
    previous = getattr(app_config, "models_module", None)
    app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0)
    finally:
        app_config.models_module = previous

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_CODENAMES.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="inventory", codename__in=codenames)
        )


def revoke_replenishment(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_CODENAMES.items():
        for group in Group.objects.filter(name=role):
            group.permissions.remove(
                *Permission.objects.filter(
                    content_type__app_label="inventory", codename__in=codenames
                )
            )


class Migration(migrations.Migration):
    dependencies = [("inventory", "0005_replenishment"), ("reviews", "0002_roles")]

    operations = [migrations.RunPython(grant_replenishment, revoke_replenishment)]
