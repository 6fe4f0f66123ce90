"""manage.py reconcile: prove the ledger (and, with --provider, our word against NowPayments')."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.errors import PaymentsError
from payments.models import LedgerDrift
from payments.services.reconcile import ledger_reconcile
from payments.services.reconcile_provider import provider_reconcile


class Command(BaseCommand):
    help = (
        "Run the ledger reconciliation (and, with --provider, the reconciliation against "
        "NowPayments), then print every open finding, one sentence each. Exits 0 when there "
        "is none, 1 when there are open findings, 2 when NowPayments could not be asked. "
        "Read-only on money: findings are recorded, nothing is corrected."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--provider",
            action="store_true",
            help="Also compare settled payments and paid-out withdrawals with NowPayments.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ledger = ledger_reconcile()
        checked = ledger["checked"]
        self.stdout.write(
            f"Ledger: {checked['postings']} postings of {checked['users']} users, "
            f"{checked['payments']} payments and {checked['withdrawals']} withdrawals checked; "
            f"{ledger['drift']} problem(s) found."
        )
        if options["provider"]:
            try:
                provider = provider_reconcile()
            except PaymentsError as exc:
                raise CommandError(
                    f"NowPayments could not be asked ({exc.code}): {exc}", returncode=2
                ) from exc
            self.stdout.write(
                f"NowPayments: {provider['payments_checked']} payments and "
                f"{provider['withdrawals_checked']} withdrawals checked; "
                f"{provider['payments_differing'] + provider['withdrawals_differing']} differ, "
                f"{provider['errors']} could not be read."
            )
            if provider["errors"]:
                raise CommandError(
                    f"NowPayments failed on {provider['errors']} item(s); run again.", returncode=2
                )
        open_findings = list(
            LedgerDrift.objects.filter(resolved_at__isnull=True).order_by("first_seen_at", "pk")
        )
        for finding in open_findings:
            self.stdout.write(sentence(finding))
        if open_findings:
            raise CommandError(f"{len(open_findings)} open finding(s).", returncode=1)
        self.stdout.write("Clean: no open findings.")


def sentence(finding: LedgerDrift) -> str:
    """One open finding as a sentence an operator can act on."""
    text = f"{finding.get_kind_display()} ({finding.kind}) on {finding.subject}"
    if finding.expected or finding.actual:
        text += f": expected {finding.expected or '-'}, found {finding.actual or '-'}"
    if finding.detail:
        text += f" ({finding.detail})"
    since = f"{finding.first_seen_at:%Y-%m-%d %H:%M}"
    return f"{text}; seen {finding.times_seen} time(s) since {since}."
