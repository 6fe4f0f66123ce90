"""Users' API keys: the only writer of ApiKey rows; creates, revokes and checks keys.

A key reads ``pk_<prefix>_<secret>``. Only its SHA-256 is stored: the prefix finds the row,
and the hash of the whole key, compared in constant time, proves the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from payments.errors import ApiKeyLimitReached, ApiKeyNotFound, InvalidApiKeyName
from payments.models import ApiKey

logger = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^pk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
NAME_MAX_LENGTH = 100
# last_used_at is written at most this often per key: a busy integrator costs no write a call.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Compared against when no row has the prefix, so a miss costs what a hit does.
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def api_key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("ascii")).hexdigest()


def api_key_create(*, user_id: int, name: str) -> tuple[ApiKey, str]:
    """A new active key of the user, and the key itself: shown once, never stored."""
    clean = " ".join((name or "").split())
    if not clean or len(clean) > NAME_MAX_LENGTH or "\x00" in clean:
        raise InvalidApiKeyName(
            f"An API key needs a name of 1 to {NAME_MAX_LENGTH} characters, such as the "
            "service that will use it."
        )
    limit = int(getattr(settings, "PAYMENTS_API_KEYS_PER_USER", 10))
    with transaction.atomic():
        # Counted under the user's lock, so two creates at once cannot pass the limit together.
        get_user_model().objects.select_for_update().filter(pk=user_id).first()
        active = ApiKey.objects.filter(user_id=user_id, revoked_at__isnull=True).count()
        if active >= limit:
            raise ApiKeyLimitReached(
                f"You have {active} active API keys, the most allowed: revoke one you no longer "
                "use, then create the new one."
            )
        prefix = secrets.token_hex(6)
        raw_key = f"pk_{prefix}_{secrets.token_urlsafe(32)}"
        api_key = ApiKey.objects.create(
            user_id=user_id, name=clean, prefix=prefix, key_hash=api_key_hash(raw_key)
        )
    logger.info("api key created id=%s prefix=%s user=%s", api_key.pk, prefix, user_id)
    return api_key, raw_key


def api_key_revoke(*, api_key_id: int, user: Any) -> ApiKey:
    """Revoke a key: by its owner, or by staff allowed to change keys. Revoking a revoked key
    changes nothing; someone else's key is not found."""
    with transaction.atomic():
        api_key = ApiKey.objects.select_for_update().filter(pk=api_key_id).first()
        allowed = api_key is not None and (
            api_key.user_id == user.pk
            or (user.is_staff and user.has_perm("payments.change_apikey"))
        )
        if api_key is None or not allowed:
            raise ApiKeyNotFound("No API key of yours has this id.")
        if api_key.revoked_at is None:
            api_key.revoked_at = timezone.now()
            api_key.save(update_fields=["revoked_at"])
            logger.info("api key revoked id=%s by user=%s", api_key.pk, user.pk)
    return api_key


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key of an active user that ``raw_key`` is, or None; notes its use."""
    match = KEY_PATTERN.match(raw_key)
    api_key = None
    if match is not None:
        api_key = (
            ApiKey.objects.select_related("user")
            .filter(prefix=match[1], revoked_at__isnull=True, user__is_active=True)
            .first()
        )
    expected = api_key.key_hash if api_key is not None else _DUMMY_HASH
    presented = api_key_hash(raw_key) if match is not None else _DUMMY_HASH
    if api_key is None or not hmac.compare_digest(expected, presented):
        return None
    _note_use(api_key)
    return api_key


def _note_use(api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
