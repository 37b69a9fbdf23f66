"""Celery tasks of the review queues."""

import logging

from celery import shared_task

from . import sla

logger = logging.getLogger(__name__)


@shared_task
def review_items_sla_sweep() -> list[int]:
    """Hold the order or escalate each open item whose deadline passed; beat runs it."""
    return sla.review_items_sla_sweep()
