from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.models import Channel, ChannelKind
from catalog.services import channel_upsert

# The kinds with a route in orders/webhook_urls.py; the others send no webhooks.
WEBHOOK_KINDS = (ChannelKind.SHOPIFY, ChannelKind.WOOCOMMERCE, ChannelKind.SQUARE)


class Command(BaseCommand):
    help = "Create a sales channel, or update its name and webhook secret."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=ChannelKind.values, help="Channel kind.")
        parser.add_argument(
            "code", help="Channel code used in webhook URLs (letters, digits, -, _)."
        )
        parser.add_argument(
            "--secret",
            help="Webhook signing secret, stored exactly as given. Omit to keep the current one.",
        )
        parser.add_argument("--name", default="", help="Display name.")
        parser.add_argument(
            "--notification-url",
            help=(
                "Square only: the notification URL exactly as configured in the Square "
                "webhook subscription (Square signs it). Omit to keep the current one."
            ),
        )

    def handle(
        self,
        *args,
        kind: str,
        code: str,
        secret: str | None,
        name: str,
        notification_url: str | None,
        **options,
    ) -> None:
        if secret is not None and not _is_utf8_text(secret):
            raise CommandError(
                "--secret is not valid UTF-8 text: the shell passed bytes that are not UTF-8. "
                "Pass the secret as UTF-8 (check the encoding of the terminal or script)."
            )
        try:
            channel, created = channel_upsert(
                kind=kind,
                code=code,
                secret=secret,
                name=name,
                notification_url=notification_url,
            )
        except (ValueError, ValidationError) as error:
            raise CommandError(_message(error)) from error

        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} {channel.kind} channel {channel.code!r}.")
        self.stdout.write(_how_orders_arrive(channel))
        if channel.kind in WEBHOOK_KINDS and not channel.webhook_secret:
            self.stderr.write("Warning: the channel has no secret, so every webhook gets a 401.")


def _how_orders_arrive(channel: Channel) -> str:
    if channel.kind in WEBHOOK_KINDS:
        return f"Webhook URL path: /webhooks/{channel.kind}/{channel.code}/"
    if channel.kind == ChannelKind.CANONICAL:
        return (
            "Orders arrive through POST /api/v1/orders/ from a token granted this channel: "
            f"manage.py add_api_token <user> --channel {channel.code}"
        )
    return f"Orders arrive as files: manage.py ingest_file --channel {channel.code} FILE..."


def _message(error: Exception) -> str:
    if isinstance(error, ValidationError) and hasattr(error, "message_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())
    return str(error)


def _is_utf8_text(text: str) -> bool:
    # Python decodes argv bytes that are not UTF-8 into lone surrogates, which no database
    # column can store.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
