"""manage.py sync_currencies: load NowPayments' currencies into the Currency table."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from payments.errors import PaymentsError
from payments.services.currencies import currencies_sync


class Command(BaseCommand):
    help = (
        "Load NowPayments' full currency list and the merchant's enabled coins into Currency, "
        "with each coin's deposit minimum and (where it follows NowPayments) its payout fee and "
        "minimum. Currencies an operator switched off stay off."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = currencies_sync()
        except PaymentsError as exc:
            raise CommandError(f"Currencies were not synced: {exc.message}") from exc
        self.stdout.write(self.style.SUCCESS(f"Currencies synced: {result.summary()}."))
        for label, codes in (
            ("created", result.created),
            ("no longer offered", result.withdrawn),
            ("kept off", result.kept_off),
        ):
            if codes:
                self.stdout.write(f"  {label}: {', '.join(codes)}")
        for code, what in result.failed.items():
            self.stdout.write(
                self.style.WARNING(f"  {code}: not refreshed, stored values kept ({what})")
            )
