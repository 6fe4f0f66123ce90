"""Payments in the sandbox: creation, the status machine, sandbox ``case`` auto-play, expiry."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from sandbox import bodies, catalogue
from sandbox.errors import ApiError, ControlError, invalid_params, invalid_transition
from sandbox.models import (
    CANCELLED,
    CONFIRMED,
    CONFIRMING,
    EXPIRED,
    FAILED,
    FINISHED,
    PARTIALLY_PAID,
    PAYMENT_FINAL,
    PAYMENT_PATH,
    PAYMENT_STATUSES,
    REFUNDED,
    SENDING,
    WAITING,
    WRONG_ASSET_CONFIRMED,
    Invoice,
    Payment,
)
from sandbox.params import amount_param, bool_param, crypto_param, str_param
from sandbox.state import SandboxState

STANDARD_LIFETIME = 7 * 24 * 3600.0  # spec 3.1: no deposit within 7 days -> expired
FIXED_RATE_LIFETIME = 20 * 60.0  # fixed rate / fee paid by user: 20 minutes
ESTIMATE_LIFETIME = 20 * 60.0  # expiration_estimate_date (CAP: creation + 20 min)
FAILURE_CASES = ("failed", "failure")
CASES = ("success", "partially_paid", *FAILURE_CASES, "expired")


def accepted_cases(state: SandboxState) -> tuple[str, ...]:
    name = state.quirks["failure_case_name"]
    return tuple(c for c in CASES if c not in FAILURE_CASES or name in ("both", c))


def _memo(seed: str) -> str:
    return str(int(hashlib.sha256(seed.encode()).hexdigest()[:12], 16) % 9_000_000_000 + 10**9)


def create_payment(
    state: SandboxState, data: dict[str, Any], *, invoice: Invoice | None = None
) -> Payment:
    """Validate a POST /v1/payment body (or an invoice payment) and store the new payment."""
    source: dict[str, Any] = dict(data)
    if invoice is not None:
        source.update(
            price_amount=invoice.price_amount,
            price_currency=invoice.price_currency,
            ipn_callback_url=invoice.ipn_callback_url,
            order_id=invoice.order_id,
            order_description=data.get("order_description") or invoice.order_description,
            is_fixed_rate=invoice.is_fixed_rate,
            is_fee_paid_by_user=invoice.is_fee_paid_by_user,
        )
    price_amount = amount_param(source, "price_amount", required=True)
    price_currency = str_param(source, "price_currency", required=True).lower()
    if catalogue.usd_rate(price_currency) is None:
        crypto_param(price_currency)  # unknown: "was not found"; disabled: "is not available"
    currency = crypto_param(str_param(source, "pay_currency", required=True))
    callback = str_param(source, "ipn_callback_url")
    if callback is not None and not callback.startswith(("http://", "https://")):
        raise invalid_params('"ipn_callback_url" must be a valid uri with a scheme http or https')
    is_fixed_rate = bool_param(source, "is_fixed_rate") or bool_param(source, "fixed_rate")
    fee_by_user = bool_param(source, "is_fee_paid_by_user")
    payout_address = str_param(source, "payout_address")
    payout_code = str_param(source, "payout_currency")
    outcome = currency
    if payout_address is not None:
        if payout_code is None:
            raise invalid_params('"payout_currency" is required')
        found = catalogue.crypto(payout_code)
        if found is None or not found.enable or not found.is_valid_address(payout_address):
            raise ApiError(
                400,
                "BAD_CREATE_WITHDRAWAL_REQUEST",
                f"Invalid payout_address: {payout_code} {payout_address}",
            )
        outcome = found
    case = str_param(source, "case")
    if case is not None and case not in accepted_cases(state):
        allowed = ", ".join(accepted_cases(state))
        raise invalid_params(f'"case" must be one of [{allowed}]')
    purchase = str_param(source, "purchase_id")
    if purchase is not None and not purchase.isdigit():
        raise invalid_params("Purchase id must be a number")

    pay_amount = amount_param(source, "pay_amount")
    if pay_amount is None:
        pay_amount = catalogue.convert(price_amount, price_currency, currency.code)
        if fee_by_user:
            pay_amount = pay_amount * (1 + catalogue.SERVICE_FEE_RATE) + currency.deposit_fee
            pay_amount += currency.withdrawal_fee
    pay_amount = currency.round_up(pay_amount)
    minimum = catalogue.min_amount(
        currency.code, outcome.code, fixed_rate=is_fixed_rate, fee_paid_by_user=fee_by_user
    )
    if pay_amount < minimum:
        raise ApiError(
            400,
            "AMOUNT_MINIMAL_ERROR",
            f"Crypto amount {bodies.plain(pay_amount)} is less than minimal "
            f"{bodies.plain(minimum)}",
        )

    with state.lock:
        now = state.now()
        payment_id = state.next_id("payment")
        lifetime = FIXED_RATE_LIFETIME if (is_fixed_rate or fee_by_user) else STANDARD_LIFETIME
        payment = Payment(
            id=payment_id,
            status=WAITING,
            price_amount=price_amount,
            price_currency=price_currency,
            pay_amount=pay_amount,
            pay_currency=currency.code,
            pay_address=currency.address_for(str(payment_id)),
            outcome_currency=outcome.code,
            created_at=now,
            updated_at=now,
            valid_until=now + lifetime,
            expiration_estimate_date=now + ESTIMATE_LIFETIME,
            purchase_id=int(purchase) if purchase else state.next_id("purchase"),
            order_id=str_param(source, "order_id"),
            order_description=str_param(source, "order_description"),
            ipn_callback_url=callback,
            invoice_id=invoice.id if invoice else None,
            payin_extra_id=_memo(str(payment_id)) if currency.extra_id_exists else None,
            payout_address=payout_address,
            payout_extra_id=str_param(source, "payout_extra_id"),
            is_fixed_rate=is_fixed_rate,
            is_fee_paid_by_user=fee_by_user,
            case=case,
            autoplay=case is not None,
        )
        state.add_payment(payment)
        state.schedule(payment.valid_until, "payment_expire", payment.id)
        if payment.autoplay:
            state.schedule(now + state.config.step_seconds, "payment_step", payment.id)
        return payment


# -- the status machine ---------------------------------------------------------------------


def _underpaid(payment: Payment) -> bool:
    return payment.redeposit_status == PARTIALLY_PAID or payment.actually_paid < payment.pay_amount


def hash_for(payment: Payment, kind: str) -> str:
    network = catalogue.BY_CODE[payment.pay_currency].network
    return catalogue.random_hash(f"{payment.id}:{kind}", network)


def set_status(state: SandboxState, payment: Payment, status: str, at: float) -> None:
    """Move to ``status`` and queue its IPN: one notification per status change (spec 4.1)."""
    payment.status = status
    if status == CONFIRMING and payment.payin_hash is None:
        payment.payin_hash = hash_for(payment, "payin")
    if status in (FINISHED, PARTIALLY_PAID) and payment.payout_hash is None:
        payment.payout_hash = hash_for(payment, "payout")
    payment.touch(max(at, payment.updated_at))
    send_ipn(state, payment)


def send_ipn(state: SandboxState, payment: Payment) -> None:
    payload = bodies.payment_ipn(payment, pay_amount_as_string=state.quirks["pay_amount_as_string"])
    state.emit_ipn(
        kind="payment",
        object_id=payment.id,
        status=payment.status,
        url=payment.ipn_callback_url,
        payload=payload,
    )


def _deposit(payment: Payment, amount: Decimal, tx_hash: str | None = None) -> None:
    payment.actually_paid = amount
    payment.outcome_cache = None
    if tx_hash:
        payment.payin_hash = tx_hash


def _half(payment: Payment) -> Decimal:
    return catalogue.BY_CODE[payment.pay_currency].round_down(payment.pay_amount / 2)


def next_status(payment: Payment) -> str:
    """The one step ``advance`` takes without a target."""
    if payment.status == WAITING:
        return CONFIRMING
    if payment.status == CONFIRMING:
        return CONFIRMED
    if payment.status == CONFIRMED:
        return PARTIALLY_PAID if _underpaid(payment) else SENDING
    if payment.status == SENDING:
        return PARTIALLY_PAID if _underpaid(payment) else FINISHED
    if payment.status == WRONG_ASSET_CONFIRMED:
        raise invalid_transition(f"payment {payment.id} waits for dashboard-finish or refund")
    raise invalid_transition(f"payment {payment.id} is {payment.status}, a final status")


_DIRECT = {  # off-path targets reachable in one jump, and the statuses they start from
    FAILED: frozenset({WAITING, CONFIRMING, CONFIRMED, SENDING}),
    EXPIRED: frozenset({WAITING}),
    REFUNDED: frozenset({FINISHED, PARTIALLY_PAID, FAILED, WRONG_ASSET_CONFIRMED}),
    CANCELLED: frozenset({PARTIALLY_PAID, WRONG_ASSET_CONFIRMED}),
    FINISHED: frozenset({PARTIALLY_PAID}),  # the merchant's manual fix in the dashboard
}


def path_to(payment: Payment, target: str) -> list[str]:
    """Statuses to pass through, in order, to reach ``target``; ControlError if impossible."""
    if target not in PAYMENT_STATUSES:
        raise ControlError(400, "bad_status", f"unknown payment status {target!r}")
    current = payment.status
    if target == current:
        raise invalid_transition(f"payment {payment.id} is already {current}")
    paid = payment.actually_paid > 0 or payment.wrong_asset_amount is not None
    if current in _DIRECT.get(target, ()) and (target != REFUNDED or paid):
        return [target]
    if WRONG_ASSET_CONFIRMED in (current, target):
        raise invalid_transition(
            f"payment {payment.id} is {current}; use wrong-asset / dashboard-finish"
        )
    if current in PAYMENT_FINAL:
        raise invalid_transition(f"payment {payment.id} is {current}; cannot become {target}")
    if target == PARTIALLY_PAID:
        steps = [s for s in (CONFIRMING, CONFIRMED) if PAYMENT_PATH.index(s) > _index(current)]
        return [*steps, PARTIALLY_PAID]
    if target in PAYMENT_PATH and PAYMENT_PATH.index(target) > _index(current):
        steps = list(PAYMENT_PATH[_index(current) + 1 : PAYMENT_PATH.index(target) + 1])
        if target in (SENDING, FINISHED) and current != WAITING and _underpaid(payment):
            raise invalid_transition(f"payment {payment.id} is underpaid; it ends partially_paid")
        return steps
    raise invalid_transition(f"payment {payment.id} cannot go from {current} to {target}")


def _index(status: str) -> int:
    return PAYMENT_PATH.index(status) if status in PAYMENT_PATH else -1


def walk(state: SandboxState, payment: Payment, steps: list[str], at: float) -> None:
    for status in steps:
        if payment.status == WAITING and status == CONFIRMING and payment.actually_paid == 0:
            partial = PARTIALLY_PAID in steps
            _deposit(payment, _half(payment) if partial else payment.pay_amount)
        set_status(state, payment, status, at)


def stop_autoplay(payment: Payment) -> None:
    payment.autoplay = False
    payment.schedule_token += 1


# -- control actions ------------------------------------------------------------------------


def pay(state: SandboxState, payment: Payment, amount: Decimal | None, tx_hash: str | None) -> None:
    if payment.status != WAITING:
        raise invalid_transition(f"payment {payment.id} is {payment.status}, not waiting")
    paid = payment.pay_amount if amount is None else amount
    if paid <= 0:
        raise ControlError(400, "bad_amount", "amount must be positive")
    stop_autoplay(payment)
    _deposit(payment, paid, tx_hash)
    set_status(state, payment, CONFIRMING, state.now())


def advance(state: SandboxState, payment: Payment, target: str | None) -> None:
    steps = [next_status(payment)] if target is None else path_to(payment, target)
    stop_autoplay(payment)
    walk(state, payment, steps, state.now())


def complete(state: SandboxState, payment: Payment) -> None:
    """Pay in full (if still waiting) and advance to finished."""
    advance(state, payment, FINISHED)


# -- the ticker's work ------------------------------------------------------------------------


def autoplay_step(state: SandboxState, payment: Payment, due: float, token: int) -> None:
    """One automatic step of a ``case`` payment or a re-deposit child."""
    if not payment.autoplay or token != payment.schedule_token or payment.status in PAYMENT_FINAL:
        return
    case = payment.case or "success"
    if payment.status == WAITING:
        if case == "expired":
            set_status(state, payment, EXPIRED, due)
            return
        _deposit(payment, _half(payment) if case == PARTIALLY_PAID else payment.pay_amount)
        set_status(state, payment, CONFIRMING, due)
    elif case in FAILURE_CASES:
        set_status(state, payment, FAILED, due)
    else:
        set_status(state, payment, next_status(payment), due)
    if payment.status not in PAYMENT_FINAL:
        state.schedule(due + state.config.step_seconds, "payment_step", payment.id, token)


def expire_due(state: SandboxState, payment: Payment, due: float) -> None:
    if payment.status == WAITING:
        stop_autoplay(payment)
        set_status(state, payment, EXPIRED, due)
