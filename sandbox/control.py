"""The control API under /_sandbox/: drive payments, payouts, the clock, faults and quirks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sandbox import bodies, jsjson, payment_cases, payment_flow, payout_flow, ticker
from sandbox.clock import iso
from sandbox.errors import ControlError
from sandbox.models import Payment
from sandbox.params import to_decimal
from sandbox.routing import Request, Response, Router, json_response, raw_json_response
from sandbox.state import SandboxState

router = Router()


def _body(request: Request) -> dict[str, Any]:
    try:
        data = request.json()
    except (ValueError, UnicodeError):
        raise ControlError(400, "bad_json", "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ControlError(400, "bad_json", "the body must be a JSON object")
    return data


def _decimal(data: dict[str, Any], name: str) -> Decimal | None:
    if data.get(name) is None:
        return None
    value = to_decimal(data[name])
    if value is None:
        raise ControlError(400, "bad_amount", f"{name} must be a decimal number or string")
    return value


def _seconds(data: dict[str, Any], name: str, default: float) -> float:
    value = _decimal(data, name)
    return default if value is None else float(value)  # time, not money


def _id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit():
        raise ControlError(400, "bad_id", f"{raw!r} is not a numeric id")
    return int(raw)


def _payment_view(state: SandboxState, payment: Payment) -> str:
    """The status body plus sandbox-only fields, as one JSON object."""
    extra = jsjson.dumps(
        {
            "case": payment.case,
            "autoplay": payment.autoplay,
            "ipn_callback_url": payment.ipn_callback_url,
            "valid_until": iso(payment.valid_until),
            "wrong_asset": None
            if payment.wrong_asset_currency is None
            else {"currency": payment.wrong_asset_currency, "amount": payment.wrong_asset_amount},
        }
    )
    return state.status_json(payment)[:-1] + "," + extra[1:]


def _payment_response(state: SandboxState, payment: Payment) -> Response:
    return raw_json_response(200, _payment_view(state, payment))


@router.route("POST", "/_sandbox/reset")
def reset(state: SandboxState, request: Request) -> Response:
    state.clear()
    return json_response(200, {"ok": True})


@router.route("GET", "/_sandbox/payments")
def payments(state: SandboxState, request: Request) -> Response:
    with state.lock:
        views = [_payment_view(state, state.payments[i]) for i in state.payment_order]
    return raw_json_response(200, '{"payments":[' + ",".join(views) + "]}")


@router.route("GET", "/_sandbox/payments/{id}")
def payment(state: SandboxState, request: Request) -> Response:
    with state.lock:
        return _payment_response(state, state.payment(_id(request.params["id"])))


def _action(name: str) -> Any:
    def handler(state: SandboxState, request: Request) -> Response:
        data = _body(request)
        with state.lock:
            record = state.payment(_id(request.params["id"]))
            if name == "pay":
                hash_value = data.get("hash")
                payment_flow.pay(state, record, _decimal(data, "amount"), hash_value or None)
            elif name == "advance":
                payment_flow.advance(state, record, data.get("status"))
            elif name == "expire":
                payment_flow.advance(state, record, "expired")
            elif name == "refund":
                payment_flow.advance(state, record, "refunded")
            elif name == "complete":
                payment_flow.complete(state, record)
            elif name == "ipn":
                payment_flow.send_ipn(state, record)
            elif name == "redeposit":
                amount = _decimal(data, "amount")
                if amount is None:
                    raise ControlError(400, "bad_amount", "amount is required")
                child = payment_cases.redeposit(state, record, amount)
                return _payment_response(state, child)
            return _payment_response(state, record)

    handler.__name__ = f"payment_{name}"
    return handler


for _name in ("pay", "advance", "expire", "refund", "redeposit", "complete", "ipn"):
    router.route("POST", f"/_sandbox/payments/{{id}}/{_name}")(_action(_name))


def _clock_body(state: SandboxState) -> Response:
    now = state.now()
    return json_response(
        200,
        {
            "now": iso(now),
            "epoch_ms": int(now * 1000),
            "offset_ms": int(state.clock.offset * 1000),
        },
    )


@router.route("GET", "/_sandbox/clock")
def clock(state: SandboxState, request: Request) -> Response:
    return _clock_body(state)


@router.route("POST", "/_sandbox/clock")
def advance_clock(state: SandboxState, request: Request) -> Response:
    seconds = _seconds(_body(request), "advance_seconds", 0.0)
    if seconds < 0:
        raise ControlError(400, "bad_clock", "the sandbox clock only moves forward")
    with state.changed:
        state.clock.advance(seconds)
        ticker.process_due(state)
        state.changed.notify_all()  # IPN retries may have fallen due
    return _clock_body(state)


@router.route("POST", "/_sandbox/faults")
def add_fault(state: SandboxState, request: Request) -> Response:
    data = _body(request)
    count = data.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        raise ControlError(400, "bad_fault", "count must be an integer")
    path = data.get("path")
    if path is not None and not isinstance(path, str):
        raise ControlError(400, "bad_fault", "path must be a string")
    method = data.get("method")
    if method is not None and method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        raise ControlError(400, "bad_fault", "method must be GET, POST, PUT, PATCH or DELETE")
    delay = _seconds(data, "delay", 10.0)
    fault = state.add_fault(str(data.get("mode")), count, path, delay, method=method)
    fault["delay"] = Decimal(str(fault["delay"]))
    return json_response(200, fault)


@router.route("GET", "/_sandbox/faults")
def faults(state: SandboxState, request: Request) -> Response:
    with state.lock:
        listed = [{**f, "delay": Decimal(str(f["delay"]))} for f in state.faults]
    return json_response(200, {"faults": listed})


@router.route("DELETE", "/_sandbox/faults")
def clear_faults(state: SandboxState, request: Request) -> Response:
    with state.lock:
        state.faults.clear()
    return json_response(200, {"ok": True})


@router.route("GET", "/_sandbox/quirks")
def quirks(state: SandboxState, request: Request) -> Response:
    return json_response(200, dict(state.quirks))


@router.route("POST", "/_sandbox/quirks")
def set_quirks(state: SandboxState, request: Request) -> Response:
    return json_response(200, state.set_quirks(_body(request)))


@router.route("GET", "/_sandbox/payouts")
def payouts(state: SandboxState, request: Request) -> Response:
    with state.lock:
        batches = [
            {
                "id": str(batch.id),
                "verified": batch.verified,
                "verify_attempts": batch.verify_attempts,
                "withdrawals": [
                    {
                        **bodies.withdrawal(state.withdrawals[i]),
                        "fee": state.withdrawals[i].fee,
                    }
                    for i in batch.withdrawals
                ],
            }
            for batch in state.batches.values()
        ]
    return json_response(200, {"payouts": batches})


@router.route("POST", "/_sandbox/payouts/{id}/advance")
def advance_payout(state: SandboxState, request: Request) -> Response:
    data = _body(request)
    target = data.get("status")
    if target is not None and not isinstance(target, str):
        raise ControlError(400, "bad_status", "status must be a string")
    items = payout_flow.advance(state, _id(request.params["id"]), target)
    return json_response(200, {"withdrawals": [bodies.withdrawal(w) for w in items]})


@router.route("GET", "/_sandbox/ipn")
def ipn_log(state: SandboxState, request: Request) -> Response:
    kind = request.query.get("kind")
    object_id = request.query.get("object_id")
    with state.lock:
        logged = [
            d.as_log()
            for d in state.deliveries.values()
            if (kind is None or d.kind == kind)
            and (object_id is None or str(d.object_id) == object_id)
        ]
    return json_response(200, {"deliveries": logged})


@router.route("GET", "/_sandbox/requests")
def request_counts(state: SandboxState, request: Request) -> Response:
    with state.lock:
        counts = dict(sorted(state.request_counts.items()))
    return json_response(200, {"counts": counts, "total": sum(counts.values())})


@router.route("POST", "/_sandbox/requests/reset")
def reset_requests(state: SandboxState, request: Request) -> Response:
    with state.lock:
        state.request_counts.clear()
    return json_response(200, {"ok": True})


@router.route("POST", "/_sandbox/balance")
def set_balance(state: SandboxState, request: Request) -> Response:
    """Set the available balance of one currency (the seed absorbs the difference)."""
    data = _body(request)
    code = str(data.get("currency", "")).lower()
    amount = _decimal(data, "amount")
    with state.lock:
        if code not in state.balance_seed or amount is None:
            raise ControlError(400, "bad_balance", "currency (enabled) and amount are required")
        current = state.balances()[code]["amount"]
        state.balance_seed[code] += amount - current
        return json_response(200, state.balances())


@router.route("GET", "/_sandbox/totp")
def totp(state: SandboxState, request: Request) -> Response:
    """The current 2FA code, as the merchant's authenticator app would show it."""
    return json_response(200, {"code": payout_flow.SandboxTOTP(state.config.totp_secret).now()})
