from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token

from catalog.models import Channel
from orders.models import ChannelApiGrant


class Command(BaseCommand):
    help = "Print the REST API token of a user, creating the token if the user has none."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="Create the user (without a password, in the integration group) if missing.",
        )
        parser.add_argument(
            "--rotate", action="store_true", help="Replace an existing token with a new one."
        )
        parser.add_argument(
            "--channel",
            action="append",
            default=[],
            metavar="CODE",
            help="Grant the user this channel (repeat for more). An integration reads and "
            "writes only the channels granted to it.",
        )

    def handle(
        self,
        *args,
        username: str,
        create_user: bool,
        rotate: bool,
        channel: list[str],
        **options,
    ) -> None:
        channels = self._channels(channel)
        user_model = get_user_model()
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            if not create_user:
                raise CommandError(
                    f"User {username!r} does not exist. Pass --create-user to create it as an "
                    "integration user."
                )
            user = user_model.objects.create_user(**{user_model.USERNAME_FIELD: username})
            user.set_unusable_password()
            user.save()
            user.groups.add(Group.objects.get(name="integration"))
            self.stderr.write(f"Created user {username!r} in the integration group.")

        for granted in channels:
            _, created = ChannelApiGrant.objects.get_or_create(user=user, channel=granted)
            if created:
                self.stderr.write(f"Granted channel {granted.code!r} to {username!r}.")

        if rotate:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)

    def _channels(self, codes: list[str]) -> list[Channel]:
        """Return the channels named by `codes`; raise CommandError naming any unknown code."""
        found = {channel.code: channel for channel in Channel.objects.filter(code__in=codes)}
        unknown = [code for code in codes if code not in found]
        if unknown:
            raise CommandError(
                f"Unknown channel code(s): {', '.join(unknown)}. The admin's Channels page "
                "lists them."
            )
        return [found[code] for code in dict.fromkeys(codes)]
