"""Schedule every periodic job as a django-celery-beat row that ops managers edit in the admin.

Celery beat runs with the DatabaseScheduler and reads these rows. They are created by name
only when missing, so an interval changed in the admin (or a task switched off) survives
restarts and a second run of this migration. The names are the ones the old
CELERY_BEAT_SCHEDULE setting used, so rows that setting already wrote are kept as they are.
"""

import json

from django.db import migrations
from django.utils import timezone

from omsguard.role_grants import role_permissions_grant, role_permissions_revoke

# Ops managers change a job's interval or switch it off; new jobs stay with superusers.
ROLE_PERMISSIONS = {
    "ops_manager": [
        "django_celery_beat.view_periodictask",
        "django_celery_beat.change_periodictask",
        "django_celery_beat.view_intervalschedule",
        "django_celery_beat.add_intervalschedule",
        "django_celery_beat.view_crontabschedule",
        "django_celery_beat.add_crontabschedule",
    ],
}

# (name, task, every, period, description)
PERIODIC_TASKS = [
    (
        "guardrails-breakers-sweep",
        "guardrails.tasks.breakers_sweep",
        1,
        "minutes",
        "Start the trial of each circuit breaker whose cool-down is over and judge the "
        "half-open trials.",
    ),
    (
        "guardrails-autonomy-gates-recompute",
        "guardrails.tasks.autonomy_gates_recompute",
        10,
        "minutes",
        "Recompute every action's autonomy gate over its rolling error-rate window.",
    ),
    (
        "guardrails-sampling-rates-recompute",
        "guardrails.tasks.sampling_rates_recompute",
        10,
        "minutes",
        "Recompute every action's audit sampling rate from its disagreement rate.",
    ),
    (
        "reviews-sla-sweep",
        "reviews.tasks.review_items_sla_sweep",
        1,
        "minutes",
        "Hold the order or escalate each open review item whose deadline passed.",
    ),
    (
        "reviews-address-confirmations-send",
        "reviews.confirmation_tasks.address_confirmations_send_due",
        1,
        "minutes",
        "Send the address confirmation emails whose send at commit failed or never ran.",
    ),
    (
        "monitoring-kpi-rollups-refresh",
        "monitoring.tasks.kpi_rollups_refresh_recent",
        5,
        "minutes",
        "Recompute the KPI rollups of the last OMSGUARD_KPI_REFRESH_HOURS hours and take the "
        "snapshot of the open review queues.",
    ),
    (
        "monitoring-alert-rules-evaluate",
        "monitoring.tasks.alert_rules_evaluate",
        1,
        "minutes",
        "Evaluate the enabled alert rules: open, update and resolve alerts.",
    ),
    (
        "monitoring-alert-notifications-send-pending",
        "monitoring.notification_tasks.alert_notifications_send_pending_task",
        5,
        "minutes",
        "Send the alert notifications whose task was lost (broker down at commit, worker died).",
    ),
]

# (name, task, hour, minute, kwargs, description): once a day at hour:minute UTC.
DAILY_TASKS = [
    (
        "monitoring-kpi-rollups-refresh-daily",
        "monitoring.tasks.kpi_rollups_refresh_days",
        3,
        30,
        {"days": 35},
        "Recompute the KPI rollups of the last `days` days, so facts that arrive or change "
        "later than OMSGUARD_KPI_REFRESH_HOURS are counted within a day.",
    ),
]


def schedule_periodic_tasks(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, period, description in PERIODIC_TASKS:
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        # IntervalSchedule has no unique constraint, so reuse the first matching row.
        interval = (
            IntervalSchedule.objects.filter(every=every, period=period).order_by("pk").first()
        )
        if interval is None:
            interval = IntervalSchedule.objects.create(every=every, period=period)
        PeriodicTask.objects.create(
            name=name,
            task=task,
            interval=interval,
            args=json.dumps([]),
            kwargs=json.dumps({}),
            description=description,
        )
    _daily_tasks_schedule(apps)
    _schedule_changed(apps)


def _daily_tasks_schedule(apps):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, hour, minute, kwargs, description in DAILY_TASKS:
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        # CrontabSchedule has no unique constraint either, so reuse the first matching row.
        fields = {
            "minute": str(minute),
            "hour": str(hour),
            "day_of_week": "*",
            "day_of_month": "*",
            "month_of_year": "*",
            "timezone": "UTC",
        }
        crontab = CrontabSchedule.objects.filter(**fields).order_by("pk").first()
        if crontab is None:
            crontab = CrontabSchedule.objects.create(**fields)
        PeriodicTask.objects.create(
            name=name,
            task=task,
            crontab=crontab,
            args=json.dumps([]),
            kwargs=json.dumps(kwargs),
            description=description,
        )


def unschedule_periodic_tasks(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    names = [entry[0] for entry in PERIODIC_TASKS + DAILY_TASKS]
    PeriodicTask.objects.filter(name__in=names).delete()
    _schedule_changed(apps)


def grant_schedule_permissions(apps, schema_editor):
    role_permissions_grant(apps, ROLE_PERMISSIONS)


def revoke_schedule_permissions(apps, schema_editor):
    role_permissions_revoke(apps, ROLE_PERMISSIONS)


def _schedule_changed(apps):
    # A running beat reloads its schedule when this timestamp moves. PeriodicTask.save()
    # moves it through a signal, but historical models in a migration send no such signal.
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0004_alert_defaults_and_roles"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("reviews", "0002_roles"),
    ]

    operations = [
        migrations.RunPython(schedule_periodic_tasks, unschedule_periodic_tasks),
        migrations.RunPython(grant_schedule_permissions, revoke_schedule_permissions),
    ]
