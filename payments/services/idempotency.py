"""Idempotency keys: claim one for a request, keep its answer for replays, forget it after a TTL.

A key belongs to one user. ``idempotency_key_claim`` inserts the record *in progress* in its own
committed transaction, so a concurrent request with the same key sees it at once; the unique
(user, key) constraint settles a race (the loser reads the winner's row). The request's answer
is then kept (``idempotency_key_complete``), or the key is given back so that a retry runs
again (``idempotency_key_release``), or, when the request failed after it had changed data,
the failure is kept so that a retry cannot do it twice (``idempotency_key_fail``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from payments.errors import IdempotencyInProgress, IdempotencyKeyReused, IdempotentRequestFailed
from payments.models import IdempotencyRecord
from payments.models.api_access import IdempotencyState

logger = logging.getLogger(__name__)

EXPIRE_BATCH = 5000
_PATH_MAX = IdempotencyRecord._meta.get_field("path").max_length or 500


@dataclass(frozen=True)
class Claim:
    """A key claimed for this request (``replay`` False), or the stored answer to replay."""

    record_id: int
    replay: bool
    status: int | None = None
    body: Any = None


def idempotency_request_hash(*, method: str, path: str, canonical_body: bytes) -> str:
    """SHA-256 of method, path and canonical body, each length-prefixed (no ambiguous joins)."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), canonical_body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def idempotency_ttl() -> timedelta:
    return timedelta(hours=int(getattr(settings, "PAYMENTS_IDEMPOTENCY_TTL_HOURS", 24)))


def idempotency_key_claim(
    *, user_id: int, key: str, method: str, path: str, request_hash: str
) -> Claim:
    """Claim ``key`` for this request, or return what the first request with it answered.

    Raises IdempotencyKeyReused when the key came with another request, IdempotencyInProgress
    while the first one runs. A record older than the TTL counts as gone, whether or not the
    periodic expiry has deleted it yet. Must run outside any transaction (``durable``): the
    claim has to be visible to other requests before this one does anything.
    """
    cutoff = timezone.now() - idempotency_ttl()
    for _ in range(3):
        try:
            with transaction.atomic(durable=True):
                record = IdempotencyRecord.objects.create(
                    user_id=user_id,
                    key=key,
                    method=method.upper(),
                    path=path[:_PATH_MAX],
                    request_hash=request_hash,
                )
            return Claim(record_id=record.pk, replay=False)
        except IntegrityError:
            pass
        existing = IdempotencyRecord.objects.filter(user_id=user_id, key=key).first()
        if existing is None:  # given back or expired since: claim it again
            continue
        if existing.created_at < cutoff:
            IdempotencyRecord.objects.filter(
                pk=existing.pk, created_at=existing.created_at
            ).delete()
            continue
        if existing.request_hash != request_hash:
            raise IdempotencyKeyReused(
                f"Idempotency-Key {key!r} was first used for another request "
                f"({existing.method} {existing.path} or another body); use a new key."
            )
        if existing.state == IdempotencyState.COMPLETED:
            logger.info("idempotent replay record=%s user=%s", existing.pk, user_id)
            return Claim(
                record_id=existing.pk,
                replay=True,
                status=existing.response_status,
                body=existing.response_body,
            )
        raise IdempotencyInProgress()
    # The key was claimed and given back three times while we looked: someone is retrying it.
    raise IdempotencyInProgress()


def idempotency_key_complete(*, record_id: int, status: int, body: Any) -> None:
    """Keep the request's answer; later requests with its key get it again."""
    IdempotencyRecord.objects.filter(pk=record_id, state=IdempotencyState.IN_PROGRESS).update(
        state=IdempotencyState.COMPLETED,
        response_status=status,
        response_body=body,
        completed_at=timezone.now(),
    )


def idempotency_key_release(*, record_id: int) -> None:
    """Forget a request that changed nothing (it failed before any write): a retry runs again."""
    IdempotencyRecord.objects.filter(pk=record_id, state=IdempotencyState.IN_PROGRESS).delete()
    logger.info("idempotency key released record=%s", record_id)


def idempotency_key_fail(*, record_id: int) -> None:
    """Keep a failure that happened after the request had changed data.

    Running it again could do its effect twice (a second withdrawal, a second deposit), so the
    key answers ``idempotent_request_failed`` (500) until it expires.
    """
    error = IdempotentRequestFailed()
    idempotency_key_complete(record_id=record_id, status=error.status_code, body=error.as_dict())
    logger.error("idempotent request failed after writing; key kept record=%s", record_id)


def idempotency_keys_expire(*, now: datetime | None = None) -> int:
    """Delete the records older than the TTL, in batches; return how many went."""
    cutoff = (now or timezone.now()) - idempotency_ttl()
    deleted = 0
    while True:
        batch = list(
            IdempotencyRecord.objects.filter(created_at__lt=cutoff)
            .order_by()
            .values_list("pk", flat=True)[:EXPIRE_BATCH]
        )
        if not batch:
            break
        count, _ = IdempotencyRecord.objects.filter(pk__in=batch).delete()
        deleted += count
    if deleted:
        logger.info("idempotency keys expired count=%s", deleted)
    return deleted
