"""Control calls for the money cases: dashboard finish, wrong-asset deposits, bulk payouts."""

from __future__ import annotations

from typing import Any

from sandbox import catalogue, payment_cases, payout_flow
from sandbox.control import _body, _decimal, _id, _payment_response
from sandbox.errors import ControlError
from sandbox.routing import Request, Response, Router, json_response
from sandbox.state import SandboxState

router = Router()

BULK_LIMIT = 10_000
DEFAULT_ADDRESSES = {"usdttrc20": "TEmGwPeRTPiLFLVfBxXkSP91yc5GMNQhfS"}


@router.route("POST", "/_sandbox/payments/{id}/dashboard-finish")
def dashboard_finish(state: SandboxState, request: Request) -> Response:
    _body(request)
    with state.lock:
        record = state.payment(_id(request.params["id"]))
        payment_cases.dashboard_finish(state, record)
        return _payment_response(state, record)


@router.route("POST", "/_sandbox/payments/{id}/wrong-asset")
def wrong_asset(state: SandboxState, request: Request) -> Response:
    data = _body(request)
    code = data.get("currency")
    amount = _decimal(data, "amount")
    if not isinstance(code, str) or amount is None:
        raise ControlError(400, "bad_request", "currency and amount are required")
    auto = data.get("auto_process", False)
    if not isinstance(auto, bool):
        raise ControlError(400, "bad_request", "auto_process must be a boolean")
    tx_hash = data.get("hash")
    with state.lock:
        record = state.payment(_id(request.params["id"]))
        payment_cases.wrong_asset(
            state, record, code, amount, auto_process=auto, tx_hash=tx_hash or None
        )
        return _payment_response(state, record)


def _int(data: dict[str, Any], name: str, default: int | None) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ControlError(400, "bad_request", f"{name} must be a positive integer")
    return value


@router.route("POST", "/_sandbox/payouts/bulk")
def bulk_payouts(state: SandboxState, request: Request) -> Response:
    """Create ``count`` withdrawals at once, without the JWT and 2FA steps."""
    data = _body(request)
    count = _int(data, "count", None)
    if count > BULK_LIMIT:
        raise ControlError(400, "bad_request", f"count must be at most {BULK_LIMIT}")
    per_batch = _int(data, "per_batch", count)
    code = str(data.get("currency") or "usdttrc20").lower()
    currency = catalogue.crypto(code)
    if currency is None or not currency.enable:
        raise ControlError(400, "bad_currency", f"currency {code!r} is unknown or disabled")
    address = data.get("address") or DEFAULT_ADDRESSES.get(code) or currency.address_for("bulk")
    amount = _decimal(data, "amount") or 1
    status = data.get("status")
    if status is not None and not isinstance(status, str):
        raise ControlError(400, "bad_status", "status must be a string")
    item: dict[str, Any] = {"address": address, "currency": code, "amount": amount}
    batches = payout_flow.create_many(
        state,
        count,
        per_batch=per_batch,
        withdrawal=item,
        status=status,
        ipn_callback_url=data.get("ipn_callback_url"),
    )
    listed = [
        {"id": str(batch.id), "withdrawal_ids": [str(i) for i in batch.withdrawals]}
        for batch in batches
    ]
    return json_response(200, {"count": count, "batches": listed})
