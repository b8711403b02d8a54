"""``manage.py create_api_key --name NAME --scopes infer,game`` — prints the key once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.security.scopes import ALL_SCOPES, UnknownScopeError
from apps.security.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for an integration or a game client and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="who or what uses the key")
        parser.add_argument(
            "--scopes", required=True, help=f"comma-separated, from: {','.join(ALL_SCOPES)}"
        )
        parser.add_argument("--owner", help="username of the person accountable for the key")

    def handle(self, *args: Any, **options: Any) -> None:
        owner = None
        if options["owner"]:
            try:
                owner = get_user_model().objects.get(username=options["owner"])
            except get_user_model().DoesNotExist:
                raise CommandError(f"no user named {options['owner']!r}") from None
        try:
            key, raw = api_key_create(name=options["name"], scopes=options["scopes"], owner=owner)
        except (UnknownScopeError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"Created key {key.name!r} with scopes {','.join(key.scopes)}. "
            "It is shown once; store it now."
        )
        self.stdout.write(raw)
