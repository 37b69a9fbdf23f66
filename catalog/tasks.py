import logging

from celery import shared_task
from django.db import OperationalError

from .services import import_job_run

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def run_import_job(job_id: str) -> str | None:
    """Run one SKU import job. A job another run owns, or one already finished, is left alone."""
    job = import_job_run(job_id=job_id)
    return job.status if job is not None else None
