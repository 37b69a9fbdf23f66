"""Let the roles see versions and canaries (ops managers run them) and schedule their evaluation.

The periodic row is created by name only when missing, so an interval an ops manager changed
in the admin survives a second run; reversing removes only this row.
"""

import json

from django.db import migrations
from django.utils import timezone

from omsguard.role_grants import role_permissions_grant, role_permissions_revoke

ROLE_PERMISSIONS = {
    "ops_manager": [
        "guardrails.view_version",
        "guardrails.add_version",
        "guardrails.change_version",
        "guardrails.view_canary",
        "guardrails.add_canary",
        "guardrails.change_canary",
        "guardrails.operate_canary",
        "guardrails.view_canaryevent",
        "guardrails.view_canaryassignment",
    ],
    "cs_manager": [
        "guardrails.view_version",
        "guardrails.view_canary",
        "guardrails.view_canaryevent",
    ],
    "leadership": [
        "guardrails.view_version",
        "guardrails.view_canary",
        "guardrails.view_canaryevent",
    ],
}

TASK_NAME = "guardrails-canaries-evaluate"
TASK = "guardrails.tasks.canaries_evaluate"
EVERY_MINUTES = 10
DESCRIPTION = (
    "Compare each running or paused canary's arms: roll back a candidate whose fulfilment "
    "exception rate rose past the limit, and pause canaries whose run is over."
)


def grant_rollout_permissions(apps, schema_editor):
    role_permissions_grant(apps, ROLE_PERMISSIONS)


def revoke_rollout_permissions(apps, schema_editor):
    role_permissions_revoke(apps, ROLE_PERMISSIONS)


def schedule_canary_evaluation(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if PeriodicTask.objects.filter(name=TASK_NAME).exists():
        return
    # IntervalSchedule has no unique constraint, so reuse the first matching row.
    interval = (
        IntervalSchedule.objects.filter(every=EVERY_MINUTES, period="minutes")
        .order_by("pk")
        .first()
    )
    if interval is None:
        interval = IntervalSchedule.objects.create(every=EVERY_MINUTES, period="minutes")
    PeriodicTask.objects.create(
        name=TASK_NAME,
        task=TASK,
        interval=interval,
        args=json.dumps([]),
        kwargs=json.dumps({}),
        description=DESCRIPTION,
    )
    _schedule_changed(apps)


def unschedule_canary_evaluation(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME).delete()
    _schedule_changed(apps)


def _schedule_changed(apps):
    # A running beat reloads its schedule when this timestamp moves; historical models in a
    # migration send no signal to move it.
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


class Migration(migrations.Migration):
    dependencies = [
        ("guardrails", "0007_versions_and_canaries"),
        ("monitoring", "0005_periodic_tasks"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(grant_rollout_permissions, revoke_rollout_permissions),
        migrations.RunPython(schedule_canary_evaluation, unschedule_canary_evaluation),
    ]
