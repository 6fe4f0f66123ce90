"""How a delivery is signed: the body's exact bytes, and an HMAC-SHA256 over timestamp and body.

The scheme (what a host checks, README "Webhooks"):

- the body is the event's JSON, keys sorted, no spaces, UTF-8; it is signed and sent as is;
- ``X-Payments-Timestamp`` is the Unix time (seconds) of the attempt;
- ``X-Payments-Signature`` is ``v1=`` and the hex HMAC-SHA256, keyed with the endpoint's
  secret, of ``<timestamp>.<body>`` (the timestamp's digits, a dot, the body's bytes).

A host recomputes the HMAC over the raw body it received, compares it in constant time, and
refuses a timestamp more than ``REPLAY_WINDOW_SECONDS`` away from its clock, so a captured
request cannot be replayed later. Every attempt is signed afresh with its own timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

SIGNATURE_VERSION = "v1"
REPLAY_WINDOW_SECONDS = 300


def webhook_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent for an event: its JSON, keys sorted, compact, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Payments-Signature`` value of ``body`` sent at ``timestamp``."""
    message = str(int(timestamp)).encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def webhook_headers(
    *, secret: str, timestamp: int, body: bytes, event_type: str, delivery_id: int
) -> dict[str, str]:
    """Every header of a delivery attempt."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "payments-webhooks/1",
        "X-Payments-Event": event_type,
        "X-Payments-Delivery": str(delivery_id),
        "X-Payments-Timestamp": str(int(timestamp)),
        "X-Payments-Signature": webhook_signature(secret=secret, timestamp=timestamp, body=body),
    }
