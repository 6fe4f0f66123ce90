"""manage.py api_key_create <username> [--name NAME]: a new API key for a user, printed once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.errors import PaymentsError
from payments.services.api_keys import api_key_create


class Command(BaseCommand):
    help = (
        "Create an API key for a user and print it. Only its hash is kept: copy the key now, "
        "it cannot be shown again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The user the key acts as.")
        parser.add_argument("--name", default="command line", help="What will use the key.")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()  # noqa: N806 - Django's idiom for the user model
        user = User._default_manager.filter(**{User.USERNAME_FIELD: options["username"]}).first()
        if user is None:
            raise CommandError(f"No user is named {options['username']!r}; no key was created.")
        try:
            api_key, raw_key = api_key_create(user_id=int(user.pk), name=options["name"])
        except PaymentsError as exc:
            raise CommandError(f"No key was created: {exc.message}") from exc
        self.stderr.write(
            f"API key {api_key.name!r} (pk_{api_key.prefix}_…) for {user.get_username()}; "
            "shown this once:"
        )
        self.stdout.write(raw_key)
