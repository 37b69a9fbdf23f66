"""Celery tasks that deliver alert notifications, with retries and the safety net."""

from celery import shared_task
from django.db import OperationalError

from . import notifications


# Retries are counted in AlertNotification.attempts against OMSGUARD_ALERT_NOTIFY_MAX_ATTEMPTS,
# so Celery's own limit is off.
@shared_task(bind=True, acks_late=True, max_retries=None)
def alert_notification_send_task(self, notification_id: int) -> str:
    """Make one attempt; schedule the next with exponential backoff when it failed."""
    try:
        outcome = notifications.alert_notification_send(notification_id=notification_id)
    except OperationalError as error:
        # The database was unreachable; try again shortly. When the attempt had already been
        # claimed, its lease makes this retry skip the row, and the periodic job takes it over
        # once the lease has ended.
        raise self.retry(exc=error, countdown=notifications.RETRY_BASE_SECONDS) from error
    if outcome.status == "retry":
        raise self.retry(countdown=notifications.notification_retry_countdown(outcome.attempts))
    return outcome.status


@shared_task
def alert_notifications_send_pending_task() -> int:
    """Send the notifications whose task was lost; schedule it every few minutes on beat."""
    return len(notifications.alert_notifications_send_pending())
