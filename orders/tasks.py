import logging

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import OperationalError

from .pipeline import delivery_process
from .services import deliveries_sweep, delivery_mark_dead_letter

logger = logging.getLogger(__name__)

MAX_RETRIES = 8


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def process_delivery(self, delivery_id: int) -> str:
    """Process one recorded delivery; database outages are retried with backoff.

    After MAX_RETRIES failed retries the delivery goes to the dead letter state, if the
    database is back by then; otherwise it stays "received" and the sweep queues it again.
    """
    worker = "eager" if self.request.is_eager else (self.request.hostname or "worker")
    try:
        delivery = delivery_process(delivery_id=delivery_id, worker=worker)
    except OperationalError as error:
        if self.request.retries >= self.max_retries:
            logger.error(
                "delivery retries exhausted",
                extra={"delivery": delivery_id, "retries": self.request.retries},
            )
            try:
                delivery = delivery_mark_dead_letter(
                    delivery_id=delivery_id,
                    worker=worker,
                    error=f"database error after {self.request.retries} retries: {error}"[:2000],
                )
            except OperationalError:
                logger.exception("could not dead-letter delivery", extra={"delivery": delivery_id})
                raise error from None
            return delivery.outcome
        countdown = get_exponential_backoff_interval(
            factor=1,
            retries=self.request.retries,
            maximum=settings.OMSGUARD_DELIVERY_RETRY_BACKOFF_MAX_SECONDS,
            full_jitter=True,
        )
        logger.warning(
            "delivery processing retried",
            extra={"delivery": delivery_id, "retries": self.request.retries},
        )
        raise self.retry(exc=error, countdown=countdown) from None
    return delivery.outcome


@shared_task
def sweep_deliveries() -> int:
    """Queue again the deliveries recorded but never processed; scheduled by celery beat."""
    return len(deliveries_sweep(older_than_seconds=settings.OMSGUARD_SWEEP_AFTER_SECONDS))
