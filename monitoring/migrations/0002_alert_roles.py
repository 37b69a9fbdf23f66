"""Let ops managers and CS managers read alerts; only services raise and resolve them."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = ("ops_manager", "cs_manager")


def grant_alert_view(apps, schema_editor):
    # Permissions are normally created after all migrations ran; create them now so the
    # groups can reference them on a fresh database.
    app_config = apps.get_app_config("monitoring")
    previous = getattr(app_config, "models_module", None)
    app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0)
    finally:
        app_config.models_module = previous

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view_alert = Permission.objects.get(content_type__app_label="monitoring", codename="view_alert")
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(view_alert)


def revoke_alert_view(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    view_alert = Permission.objects.filter(
        content_type__app_label="monitoring", codename="view_alert"
    )
    for group in Group.objects.filter(name__in=ROLES):
        group.permissions.remove(*view_alert)


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0001_alerts"), ("reviews", "0002_roles")]

    operations = [migrations.RunPython(grant_alert_view, revoke_alert_view)]
