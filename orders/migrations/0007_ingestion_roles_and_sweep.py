"""Let integrations post canonical orders and poll deliveries, and schedule the sweep of unprocessed deliveries."""

import json

from django.contrib.auth.management import create_permissions
from django.db import migrations

SWEEP_TASK_NAME = "Sweep deliveries never processed"
SWEEP_TASK = "orders.tasks.sweep_deliveries"
INTEGRATION_CODENAMES = ("add_order", "view_delivery")


def grant_add_order(apps, schema_editor):
    # Permissions are normally created after all migrations ran; create them now so the
    # group can reference them on a fresh database.
    app_config = apps.get_app_config("orders")
    previous = getattr(app_config, "models_module", None)
    app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0)
    finally:
        app_config.models_module = previous

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="integration")
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="orders", codename__in=INTEGRATION_CODENAMES)
    )


def revoke_add_order(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name="integration"):
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="orders", codename__in=INTEGRATION_CODENAMES)
        )


def schedule_sweep(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=SWEEP_TASK_NAME,
        defaults={"task": SWEEP_TASK, "interval": every_minute, "args": json.dumps([])},
    )


def unschedule_sweep(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=SWEEP_TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0006_ingestion_updates_idempotency"),
        ("reviews", "0002_roles"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(grant_add_order, revoke_add_order),
        migrations.RunPython(schedule_sweep, unschedule_sweep),
    ]
