"""Findings: the one writer of LedgerDrift rows (recorded once per open subject, then resolved)."""

from __future__ import annotations

import logging
import uuid
from typing import Any, cast

from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.utils import timezone

from payments.errors import InvalidTransition
from payments.models import LedgerDrift
from payments.models.ops import DriftKind

logger = logging.getLogger(__name__)

# An open finding that is resolved while a caller records it again makes the caller insert a
# new one; this bounds how often the update-or-insert loop goes round.
_RECORD_ATTEMPTS = 3


def finding_record(
    *,
    kind: str,
    subject: str,
    expected: str = "",
    actual: str = "",
    detail: str = "",
    user_id: int | None = None,
    payment_id: uuid.UUID | None = None,
) -> LedgerDrift:
    """Open a finding for (kind, subject), or count one more sighting of the open one.

    A sighting bumps ``times_seen`` and ``last_seen_at`` and refreshes what was seen
    (expected, actual, and detail when one is given). Two callers racing to open the same
    finding end with one row: the loser's insert fails on ``drift_one_open_per_subject`` inside
    a savepoint and it counts a sighting instead.
    """
    if kind not in DriftKind.values:
        raise ValueError(f"Unknown finding kind {kind!r}.")
    subject = _fit("subject", subject)
    seen = {"expected": _fit("expected", expected), "actual": _fit("actual", actual)}
    for _attempt in range(_RECORD_ATTEMPTS):
        found = _seen_again(kind=kind, subject=subject, seen=seen, detail=detail)
        if found is not None:
            return found
        try:
            with transaction.atomic():
                created = LedgerDrift.objects.create(
                    kind=kind,
                    subject=subject,
                    user_id=user_id,
                    payment_id=payment_id,
                    detail=detail,
                    **seen,
                )
        except IntegrityError:
            # A concurrent caller opened it first and committed: the next round counts a
            # sighting (the savepoint rolled back, so an enclosing transaction goes on).
            continue
        logger.warning("finding opened kind=%s subject=%s", kind, subject)
        return created
    raise RuntimeError(f"Could not record finding {kind} {subject}.")  # pragma: no cover


def finding_resolve(*, finding_id: int, user: Any, notes: str) -> LedgerDrift:
    """Close an open finding, saying who closed it and why; a later sighting opens a new one."""
    with transaction.atomic():
        finding = LedgerDrift.objects.select_for_update().get(pk=finding_id)
        if finding.resolved_at is not None:
            raise InvalidTransition(
                f"Finding {finding.pk} ({finding.subject}) is already resolved."
            )
        finding.resolved_at = timezone.now()
        finding.resolved_by = user
        finding.resolution_notes = notes
        finding.save(update_fields=["resolved_at", "resolved_by", "resolution_notes"])
    logger.info("finding resolved id=%s kind=%s by user=%s", finding.pk, finding.kind, user.pk)
    return finding


def _seen_again(
    *, kind: str, subject: str, seen: dict[str, str], detail: str
) -> LedgerDrift | None:
    changes: dict[str, Any] = {
        "times_seen": F("times_seen") + 1,
        "last_seen_at": timezone.now(),
        **seen,
    }
    if detail:
        changes["detail"] = detail
    open_finding = LedgerDrift.objects.filter(kind=kind, subject=subject, resolved_at__isnull=True)
    if not open_finding.update(**changes):
        return None
    return open_finding.first()


# The lengths of the CharFields a finding's text goes into.
_LIMITS = {
    name: cast(models.CharField, LedgerDrift._meta.get_field(name)).max_length
    for name in ("subject", "expected", "actual")
}


def _fit(name: str, value: str) -> str:
    return value[: _LIMITS[name]]
