"""manage.py reprocess_events: apply stored NowPayments IPN events again (failed ones, or by id)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.models import ProviderEvent
from payments.models.event import EventOutcome
from payments.services.events import events_reprocess, reprocess_summary


class Command(BaseCommand):
    help = (
        "Apply stored NowPayments IPN events again: the ones given with --id (even if already "
        "processed), the failed ones (--all-failed: outcome error, or still received after a "
        "minute) or those of one --outcome. Safe to repeat: a payment moves forward only and "
        "is credited exactly once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--id",
            dest="ids",
            type=int,
            nargs="+",
            action="extend",
            metavar="N",
            help="Reprocess the events with these ids, whatever their outcome.",
        )
        parser.add_argument(
            "--outcome",
            choices=[EventOutcome.ERROR.value, EventOutcome.RECEIVED.value],
            help="Reprocess the events with outcome error, or still received after a minute.",
        )
        parser.add_argument(
            "--all-failed",
            action="store_true",
            help="Reprocess every failed event: outcome error, or still received after a minute.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[int] | None = options["ids"]
        outcome: str | None = options["outcome"]
        all_failed: bool = options["all_failed"]
        if ids is None and outcome is None and not all_failed:
            raise CommandError(
                "Say which events to reprocess: --id N [N ...], --outcome error|received "
                "or --all-failed."
            )
        if ids is not None and (outcome is not None or all_failed):
            raise CommandError("--id picks events by id; it cannot be combined with a filter.")
        if outcome is not None and all_failed:
            raise CommandError("--all-failed already covers both outcomes; give one of the two.")
        if ids is not None:
            if any(pk <= 0 for pk in ids):
                raise CommandError("Event ids are positive integers.")
            found = set(ProviderEvent.objects.filter(pk__in=ids).values_list("pk", flat=True))
            missing = sorted(set(ids) - found)
            if missing:
                raise CommandError(
                    f"No stored event has id {', '.join(map(str, missing))}; nothing was "
                    "reprocessed."
                )

        counts = events_reprocess(event_ids=ids, outcome=outcome)
        self.stdout.write(self.style.SUCCESS(reprocess_summary(counts)))
        failed = counts[EventOutcome.ERROR] + counts["unexpected_error"]
        if failed:
            self.stderr.write(
                self.style.WARNING(
                    f"{failed} event(s) still failed; their detail is on the event "
                    "(admin: Provider events, outcome error)."
                )
            )
