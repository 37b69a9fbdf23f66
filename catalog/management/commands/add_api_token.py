from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token


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

    def handle(self, *args, username: str, create_user: bool, rotate: bool, **options) -> None:
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

        if rotate:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
