from celery import shared_task
from django.db import OperationalError

from .out_of_stock import out_of_stock_retry


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def retry_out_of_stock(sku_id: int) -> int:
    """Retry the orders held out of stock on a SKU after its stock rose; returns how many fit."""
    return len(out_of_stock_retry(sku_id=sku_id))
