import logging

from celery import shared_task
from django.db import OperationalError

from .pipeline import delivery_process

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def process_delivery(self, delivery_id: int) -> str:
    """Process one recorded delivery; database outages are retried with backoff."""
    worker = "eager" if self.request.is_eager else (self.request.hostname or "worker")
    delivery = delivery_process(delivery_id=delivery_id, worker=worker)
    return delivery.outcome
