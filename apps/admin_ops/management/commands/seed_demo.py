"""``manage.py seed_demo``: roles, a demo admin with a fresh password, and a demo API key.

For the embedded default and DEBUG only: it refuses to run otherwise, since it prints
credentials. The credentials are also written to ``var/demo-credentials.json`` (mode 600) so
``make run`` can repeat them once every process is up.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.security.models import ApiKey
from apps.security.scopes import ADMIN_ROLE, ALL_SCOPES
from apps.security.services import api_key_create, api_key_revoke, roles_ensure

DEMO_ADMIN = "admin"
DEMO_KEY_NAME = "demo"


class Command(BaseCommand):
    help = "Seed demo content for the embedded default: roles, an admin, an API key."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("seed_demo prints credentials and only runs with DEBUG=1")
        with transaction.atomic():
            roles_ensure()
            user_model = get_user_model()
            admin, _ = user_model.objects.get_or_create(
                username=DEMO_ADMIN, defaults={"email": "admin@bodybroker.invalid"}
            )
            password = secrets.token_urlsafe(12)
            admin.set_password(password)
            admin.is_staff = admin.is_superuser = True
            admin.save()
            admin.groups.add(Group.objects.get(name=ADMIN_ROLE))
            for old in ApiKey.objects.filter(name=DEMO_KEY_NAME, revoked_at__isnull=True):
                api_key_revoke(key=old)
            _, raw_key = api_key_create(name=DEMO_KEY_NAME, scopes=ALL_SCOPES, owner=admin)
        credentials = {"username": DEMO_ADMIN, "password": password, "api_key": raw_key}
        path = settings.VAR_DIR / "demo-credentials.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(credentials, handle)
        self.stdout.write(
            f"Demo admin: {DEMO_ADMIN} / {password}\nDemo API key (all scopes): {raw_key}"
        )
