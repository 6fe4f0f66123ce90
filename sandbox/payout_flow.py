"""Mass payouts in the sandbox: batch creation, TOTP verification, statuses, auto-rejection."""

from __future__ import annotations

import time
from collections import defaultdict
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pyotp

from sandbox import bodies, catalogue
from sandbox.errors import ApiError, ControlError, invalid_params, invalid_transition, not_found
from sandbox.models import PAYOUT_FINAL, PAYOUT_PATH, PAYOUT_STATUSES, Batch, Withdrawal
from sandbox.params import amount_param, str_param
from sandbox.state import SandboxState

VERIFY_WINDOW = 3600.0  # unverified payouts are rejected one hour after creation (spec 2.14)
VERIFY_ATTEMPTS = 10
MAX_DECIMALS = 6
SIX_PLACES = Decimal(1).scaleb(-MAX_DECIMALS)


class SandboxTOTP(pyotp.TOTP):
    """TOTP without pyotp's minimum secret length.

    pyotp >= 2.10 refuses secrets under 112 bits, which includes the sandbox's default
    ``JBSWY3DPEHPK3PXP`` (80 bits, the usual demo secret). The sandbox accepts any secret.
    """

    min_secret_length_bits = 0


def _bad_withdrawal(message: str) -> ApiError:
    return ApiError(400, "BAD_CREATE_WITHDRAWAL_REQUEST", message)


def _callback(value: Any, name: str) -> str | None:
    url = str_param({name: value}, name)
    if url is not None and not url.startswith(("http://", "https://")):
        raise invalid_params(f'"{name}" must be a valid uri with a scheme http or https')
    return url


def _item(raw: Any, batch_url: str | None, description: str | None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise invalid_params('"withdrawals" must contain objects')
    code = str_param(raw, "currency", required=True)
    currency = catalogue.crypto(code)
    address = str_param(raw, "address", required=True)
    if currency is None or not currency.enable or not currency.is_valid_address(address):
        raise _bad_withdrawal(f"Invalid payout_address: {code} {address}")
    extra_id = str_param(raw, "extra_id")
    if not currency.is_valid_extra_id(extra_id):
        raise _bad_withdrawal(f"Invalid extra_id: {code} {extra_id}")
    fiat_amount = amount_param(raw, "fiat_amount")
    fiat_currency = str_param(raw, "fiat_currency")
    if fiat_amount is not None and fiat_currency is not None:
        if fiat_currency.lower() not in catalogue.FIAT_USD:
            raise invalid_params(f"Fiat currency {fiat_currency} is not supported")
        converted = catalogue.convert(fiat_amount, fiat_currency, currency.code)
        amount = currency.round_down(converted).quantize(SIX_PLACES, rounding=ROUND_DOWN)
    else:
        amount = amount_param(raw, "amount", required=True)
        if amount.normalize().as_tuple().exponent < -MAX_DECIMALS:  # type: ignore[operator]
            raise invalid_params(f'"amount" must have no more than {MAX_DECIMALS} decimal places')
    return {
        "currency": currency.code,
        "address": address,
        "amount": amount,
        "extra_id": extra_id,
        "ipn_callback_url": _callback(raw.get("ipn_callback_url"), "ipn_callback_url") or batch_url,
        "unique_external_id": str_param(raw, "unique_external_id"),
        "payout_description": description,
        "fiat_amount": fiat_amount,
        "fiat_currency": fiat_currency.lower() if fiat_currency else None,
    }


def create_batch(state: SandboxState, data: dict[str, Any]) -> tuple[Batch, list[Withdrawal]]:
    raw_items = data.get("withdrawals")
    if raw_items is None:
        raise invalid_params('"withdrawals" is required')
    if not isinstance(raw_items, list) or not raw_items:
        raise invalid_params('"withdrawals" must be a non-empty array')
    batch_url = _callback(data.get("ipn_callback_url"), "ipn_callback_url")
    description = str_param(data, "payout_description")
    items = [_item(raw, batch_url, description) for raw in raw_items]
    with state.lock:
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for item in items:
            totals[item["currency"]] += item["amount"]
        balances = state.balances()
        for code, total in totals.items():
            if balances.get(code, {}).get("amount", Decimal(0)) < total:
                raise _bad_withdrawal(f"Insufficient balance: {code}")
        now = state.now()
        batch = Batch(id=state.next_id("batch"), withdrawals=[], created_at=now)
        created: list[Withdrawal] = []
        for item in items:
            withdrawal = Withdrawal(
                id=state.next_id("payout"),
                batch_id=batch.id,
                status="CREATING",
                created_at=now,
                **item,
            )
            state.withdrawals[withdrawal.id] = withdrawal
            batch.withdrawals.append(withdrawal.id)
            created.append(withdrawal)
        state.batches[batch.id] = batch
        state.schedule(now + VERIFY_WINDOW, "payout_reject", batch.id)
        return batch, created


def _totp_ok(state: SandboxState, code: str) -> bool:
    """Accept the code at real time (an authenticator app) or at the sandbox clock's time."""
    totp = SandboxTOTP(state.config.totp_secret)
    return any(
        totp.verify(code, for_time=int(moment), valid_window=1)
        for moment in (time.time(), state.now())
    )


def verify(state: SandboxState, batch_id: int, data: dict[str, Any]) -> None:
    code = str_param(data, "verification_code", required=True)
    with state.lock:
        batch = state.batches.get(batch_id)
        if batch is None:
            raise not_found("Payout not found")
        if batch.verified:
            raise ApiError(400, "BAD_REQUEST", "Payout is already verified")
        items = [state.withdrawals[i] for i in batch.withdrawals]
        if any(item.status != "CREATING" for item in items):
            raise ApiError(400, "BAD_REQUEST", "Payout can not be verified")
        if batch.verify_attempts >= VERIFY_ATTEMPTS:
            raise ApiError(400, "BAD_REQUEST", "Verification attempts limit exceeded")
        batch.verify_attempts += 1
        if not _totp_ok(state, code):
            raise ApiError(400, "BAD_REQUEST", "Invalid verification code")
        batch.verified = True
        now = state.now()
        for item in items:
            item.requested_at = now
            set_status(state, item, "WAITING", now)


def set_status(state: SandboxState, item: Withdrawal, status: str, at: float) -> None:
    currency = catalogue.BY_CODE[item.currency]
    item.status = status
    item.updated_at = at
    if status == "WAITING" and item.requested_at is None:
        item.requested_at = at
    if status in ("PROCESSING", "SENDING", "FINISHED") and item.fee is None:
        item.fee = currency.payout_fee  # what GET /v1/payout/fee quotes for the coin
    if status in ("SENDING", "FINISHED") and item.hash is None:
        item.hash = catalogue.random_hash(f"{item.id}:payout", currency.network)
    if status == "FINISHED":
        item.error = None
    elif status == "FAILED":
        item.error = item.error or "Sandbox: the payout failed"
    elif status == "REJECTED":
        item.error = item.error or "Sandbox: the payout was rejected"
    state.emit_ipn(
        kind="payout",
        object_id=item.id,
        status=status,
        url=item.ipn_callback_url,
        payload=bodies.withdrawal_ipn(item),
    )


def targets(state: SandboxState, payout_id: int) -> list[Withdrawal]:
    """The withdrawals of a batch id, or the one withdrawal of a withdrawal id."""
    with state.lock:
        if payout_id in state.batches:
            return [state.withdrawals[i] for i in state.batches[payout_id].withdrawals]
        if payout_id in state.withdrawals:
            return [state.withdrawals[payout_id]]
    raise ControlError(404, "not_found", f"payout {payout_id} not found")


def _path(item: Withdrawal, target: str | None) -> list[str]:
    current = item.status
    if target is None:
        if current not in PAYOUT_PATH or current == "FINISHED":
            raise invalid_transition(f"withdrawal {item.id} is {current}")
        return [PAYOUT_PATH[PAYOUT_PATH.index(current) + 1]]
    if target not in PAYOUT_STATUSES:
        raise ControlError(400, "bad_status", f"unknown payout status {target!r}")
    if target == "FINISHED" and current == "FAILED":
        return [target]  # spec 3.2: a failed payout may still be processed
    if target == "FAILED" and current == "FINISHED":
        return [target]  # GUESS: a payout reported finished that failed after all
    if current in PAYOUT_FINAL or current == target or current == "FAILED":
        raise invalid_transition(f"withdrawal {item.id} is {current}; cannot become {target}")
    if target in PAYOUT_PATH:
        start, end = PAYOUT_PATH.index(current), PAYOUT_PATH.index(target)
        if end <= start:
            raise invalid_transition(f"withdrawal {item.id} is {current}; cannot become {target}")
        return list(PAYOUT_PATH[start + 1 : end + 1])
    return [target]


def advance(state: SandboxState, payout_id: int, target: str | None) -> list[Withdrawal]:
    wanted = target.upper() if isinstance(target, str) else None
    with state.lock:
        items = targets(state, payout_id)
        plans = [(item, _path(item, wanted)) for item in items]
        now = state.now()
        for item, steps in plans:
            for status in steps:
                set_status(state, item, status, now)
            batch = state.batches[item.batch_id]
            if item.status != "CREATING":
                batch.verified = batch.verified or item.status not in ("REJECTED", "CANCELLED")
        return items


def reject_unverified(state: SandboxState, batch_id: int, due: float) -> None:
    batch = state.batches.get(batch_id)
    if batch is None or batch.verified:
        return
    for withdrawal_id in batch.withdrawals:
        item = state.withdrawals[withdrawal_id]
        if item.status == "CREATING":
            item.error = "Payout was not verified within one hour"
            set_status(state, item, "REJECTED", due)


def create_many(
    state: SandboxState,
    count: int,
    *,
    per_batch: int,
    withdrawal: dict[str, Any],
    status: str | None,
    ipn_callback_url: str | None = None,
) -> list[Batch]:
    """``count`` withdrawals like ``withdrawal``, ``per_batch`` to a batch, without the JWT
    and 2FA steps; moved on to ``status`` if given (control API, for tests)."""
    batches: list[Batch] = []
    with state.lock:
        for start in range(0, count, per_batch):
            size = min(per_batch, count - start)
            data: dict[str, Any] = {"withdrawals": [dict(withdrawal) for _ in range(size)]}
            if ipn_callback_url:
                data["ipn_callback_url"] = ipn_callback_url
            batch, _ = create_batch(state, data)
            if status is not None and status.upper() != "CREATING":
                advance(state, batch.id, status)
            batches.append(batch)
    return batches
