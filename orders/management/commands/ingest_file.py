import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.models import Channel
from orders.canonical import AdapterError
from orders.channel_ingest import FILE_KINDS, channel_file_ingest


class Command(BaseCommand):
    help = (
        "Record the orders in Amazon SP-API or eBay Fulfillment API JSON files as deliveries "
        "of a channel; they are then processed like webhook deliveries."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--channel", required=True, help="Code of an amazon or ebay channel.")
        parser.add_argument("files", nargs="+", type=Path, help="JSON files to read.")

    def handle(self, *args, channel: str, files: list[Path], **options) -> None:
        found = Channel.objects.filter(code=channel).first()
        if found is None:
            raise CommandError(f"Channel {channel!r} not found. Create it with add_channel.")
        if found.kind not in FILE_KINDS:
            raise CommandError(
                f"Channel {channel!r} is a {found.kind} channel; ingest_file reads only "
                "amazon and ebay channels."
            )

        for path in files:
            data = _read_json(path)
            try:
                results = channel_file_ingest(channel=found, data=data, source=path.name)
            except AdapterError as error:
                raise CommandError(f"{path}: entry {error.field}: {error.reason}") from None
            created = sum(result.created for result in results)
            self.stdout.write(
                f"{path}: {len(results)} orders, {created} new deliveries, "
                f"{len(results) - created} already recorded."
            )


def _read_json(path: Path) -> object:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CommandError(f"Cannot read {path}: {error.strerror or error}.") from None
    try:
        return json.loads(raw)
    except UnicodeDecodeError as error:
        raise CommandError(f"{path}: not UTF-8 text (byte {error.start}).") from None
    except json.JSONDecodeError as error:
        raise CommandError(
            f"{path}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}."
        ) from None
    except RecursionError:
        raise CommandError(f"{path}: JSON nested too deeply.") from None
