"""manage.py demo_setup: currencies, a superuser, a demo user and a staff user per role.

Idempotent: the generated passwords are kept in ``var/demo-credentials.json`` and every run
prints the same ones (and puts them back on the users if they were changed).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.errors import PaymentsError
from payments.models import UserBalance
from payments.roles import ROLES
from payments.services.currencies import currencies_follow_provider_terms, currencies_sync
from payments.services.providers.nowpayments.gateway import get_provider

ADMIN_USERNAME = "admin"
DEMO_USERNAME = "demo"
CREDENTIALS_FILE = "demo-credentials.json"


def load_credentials(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(
            f"{path} is not readable JSON ({exc}); delete it to start over."
        ) from exc
    return data if isinstance(data, dict) else {}


def save_credentials(path: Path, data: dict[str, Any]) -> None:
    """Write atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


class Command(BaseCommand):
    help = (
        "Prepare a local demo (DJANGO_DEBUG=1 only): wait for the NowPayments sandbox, sync "
        "currencies from it, create an admin and a demo user with generated passwords, and "
        "print the URLs and credentials."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=60.0,
            help="seconds to wait for the provider (the sandbox) to answer (default 60)",
        )
        parser.add_argument(
            "--credentials",
            type=Path,
            default=None,
            help=f"where the generated passwords are kept (default var/{CREDENTIALS_FILE})",
        )
        parser.add_argument(
            "--web-url",
            default="",
            help="the site's URL to print (default PAYMENTS_PUBLIC_BASE_URL or :8000)",
        )
        parser.add_argument(
            "--flower-url",
            default="",
            help="Flower's URL to print (default http://127.0.0.1:$FLOWER_PORT)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "demo_setup creates users with printed passwords, so it runs only with "
                "DJANGO_DEBUG=1."
            )
        self._wait_for_provider(options["wait"])
        # Demo currencies take the sandbox's payout fees and minimums (BTC from about $10),
        # also those a run before per-currency terms existed created; the sync below reads them.
        currencies_follow_provider_terms()
        try:
            result = currencies_sync()
        except PaymentsError as exc:
            raise CommandError(f"Currencies were not synced: {exc.message}") from exc
        self.stdout.write(
            f"Currencies synced from {settings.NOWPAYMENTS_API_URL}: {result.summary()}."
        )

        path = options["credentials"] or Path(settings.VAR_DIR) / CREDENTIALS_FILE
        credentials = load_credentials(path)
        admin = self._ensure_user(credentials, "admin", ADMIN_USERNAME, superuser=True)
        demo = self._ensure_user(credentials, "demo", DEMO_USERNAME, superuser=False)
        # One staff account per operator role, so that four-eyes actions can be tried.
        staff = {
            role: self._ensure_user(credentials, role, role, superuser=False) for role in ROLES
        }
        save_credentials(path, credentials)
        for role, entry in staff.items():
            member = get_user_model().objects.get(username=entry["username"])
            if not member.is_staff:
                member.is_staff = True
                member.save(update_fields=["is_staff"])
            member.groups.set([Group.objects.get(name=role)])
        demo_user = get_user_model().objects.get(username=demo["username"])
        UserBalance.objects.get_or_create_for_user(demo_user)
        self._print_summary(admin, demo, path, options, staff)

    def _wait_for_provider(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if get_provider().status().ok:
                    return
            except PaymentsError:
                pass
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"NowPayments at {settings.NOWPAYMENTS_API_URL} did not answer within "
                    f"{timeout:g} s; is the sandbox running?"
                )
            time.sleep(0.5)

    def _ensure_user(
        self, credentials: dict[str, Any], key: str, username: str, *, superuser: bool
    ) -> dict[str, str]:
        entry = credentials.get(key)
        if not isinstance(entry, dict) or not entry.get("password"):
            entry = {"username": username, "password": secrets.token_urlsafe(12)}
            credentials[key] = entry
        entry.setdefault("username", username)
        user_model = get_user_model()
        user = user_model.objects.filter(username=entry["username"]).first()
        if user is None:
            email = f"{entry['username']}@example.com"
            if superuser:
                user_model.objects.create_superuser(entry["username"], email, entry["password"])
            else:
                user_model.objects.create_user(entry["username"], email, entry["password"])
            return entry
        if not user.check_password(entry["password"]) or (
            superuser and not (user.is_superuser and user.is_staff and user.is_active)
        ):
            user.set_password(entry["password"])
            if superuser:
                user.is_superuser = user.is_staff = user.is_active = True
            user.save()
        return entry

    def _print_summary(
        self,
        admin: dict[str, str],
        demo: dict[str, str],
        path: Path,
        options: dict[str, Any],
        staff: dict[str, dict[str, str]],
    ) -> None:
        web = options["web_url"] or settings.PAYMENTS_PUBLIC_BASE_URL or "http://127.0.0.1:8000"
        web = web.rstrip("/")
        flower = options["flower_url"] or (
            f"http://127.0.0.1:{os.environ.get('FLOWER_PORT') or 5555}"
        )
        flower_user, _, flower_password = (
            str(settings.FLOWER_BASIC_AUTH).split(",")[0].strip().partition(":")
        )
        sandbox = settings.NOWPAYMENTS_API_URL.rstrip("/").removesuffix("/v1")
        lines = [
            "",
            "Demo ready:",
            f"  User pages       {web}/login/   (sign in as the demo user)",
            f"  Admin            {web}/admin/",
            f"    superuser      {admin['username']} / {admin['password']}",
            f"    demo user      {demo['username']} / {demo['password']}",
            *(f"    {role:<14} {e['username']} / {e['password']}" for role, e in staff.items()),
            f"  Flower           {flower.rstrip('/')}/",
        ]
        if flower_password:
            lines.append(f"    basic auth     {flower_user} / {flower_password}")
        lines += [
            f"  Sandbox control  {sandbox}/_sandbox/payments",
            f"  IPN webhook      {web}/payments/webhooks/nowpayments/",
            f"  Passwords kept in {path}",
            "",
        ]
        self.stdout.write("\n".join(lines))
