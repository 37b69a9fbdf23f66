from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from orders.models import Delivery, DeliveryOutcome
from orders.pipeline import delivery_process
from orders.tasks import process_delivery


class Command(BaseCommand):
    help = (
        "Process deliveries that were recorded but never processed, for example because the "
        "broker was down when they arrived."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            default=60,
            help="Only deliveries received at least this many seconds ago (default 60).",
        )
        parser.add_argument(
            "--inline",
            action="store_true",
            help="Process in this process instead of queueing Celery tasks.",
        )

    def handle(self, *args, older_than: int, inline: bool, **options) -> None:
        cutoff = timezone.now() - timedelta(seconds=max(older_than, 0))
        pending = Delivery.objects.filter(
            outcome=DeliveryOutcome.RECEIVED, received_at__lte=cutoff
        ).values_list("pk", flat=True)

        count = 0
        for delivery_pk in pending.iterator():
            if inline:
                delivery_process(delivery_id=delivery_pk, worker="process_deliveries")
            else:
                process_delivery.delay(delivery_pk)
            count += 1
        action = "Processed" if inline else "Queued"
        self.stdout.write(f"{action} {count} unprocessed deliveries.")
