"""Celery tasks that email customer address confirmations."""

from celery import shared_task
from django.db import OperationalError

from . import confirmations


@shared_task(acks_late=True, autoretry_for=(OperationalError,), max_retries=3, retry_backoff=True)
def address_confirmation_send_task(confirmation_id: int) -> bool:
    """Email one confirmation; queued when its review item's transaction commits.

    Running it twice sends once: the send locks the row and skips a confirmation already sent.
    """
    return confirmations.address_confirmation_send(confirmation_id=confirmation_id)


@shared_task
def address_confirmations_send_due() -> int:
    """Send the confirmations still unsent (failed or never queued); beat runs it every minute."""
    return len(confirmations.address_confirmations_send_due())
