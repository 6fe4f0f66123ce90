"""Money cases beyond the normal path: dashboard finish, wrong-asset deposits, re-deposits.

Spec 3.1 notes: "``partially_paid`` can still move to ``finished``: the merchant can change it
by hand in the dashboard", and "wrong-asset deposits need manual handling unless
auto-processing is enabled". How a wrong-asset payment looks is a GUESS (sandbox/README.md).
"""

from __future__ import annotations

from decimal import Decimal

from sandbox import catalogue
from sandbox.errors import ControlError, invalid_transition
from sandbox.models import (
    CONFIRMED,
    CONFIRMING,
    FINISHED,
    PARTIALLY_PAID,
    SENDING,
    WAITING,
    WRONG_ASSET_CONFIRMED,
    Payment,
)
from sandbox.payment_flow import hash_for, send_ipn, set_status, stop_autoplay, walk
from sandbox.state import SandboxState


def dashboard_finish(state: SandboxState, payment: Payment) -> None:
    """The merchant sets ``finished`` by hand. ``actually_paid`` stays what was paid; a held
    wrong-asset deposit is processed in the asset that arrived."""
    if payment.status == WRONG_ASSET_CONFIRMED:
        _switch_asset(payment)
    elif payment.status != PARTIALLY_PAID:
        raise invalid_transition(
            f"payment {payment.id} is {payment.status}; the dashboard finishes only "
            f"{PARTIALLY_PAID} or {WRONG_ASSET_CONFIRMED} payments"
        )
    stop_autoplay(payment)
    set_status(state, payment, FINISHED, state.now())


def wrong_asset(
    state: SandboxState,
    payment: Payment,
    code: str,
    amount: Decimal,
    *,
    auto_process: bool,
    tx_hash: str | None = None,
) -> None:
    """The customer sent ``amount`` of another asset to the payment's address.

    Without auto-processing the payment stops at ``wrong_asset_confirmed`` (``pay_currency``
    and ``actually_paid`` unchanged) until dashboard_finish. With it, the payment plays
    confirming -> confirmed -> sending -> finished with ``pay_currency`` = the deposited asset
    and ``actually_paid`` = the deposited amount, as auto-processed wrong-asset deposits arrive.
    """
    if payment.status != WAITING:
        raise invalid_transition(f"payment {payment.id} is {payment.status}, not waiting")
    currency = catalogue.crypto(code)
    if currency is None or not currency.enable:
        raise ControlError(400, "bad_currency", f"currency {code!r} is unknown or disabled")
    if currency.code == payment.pay_currency:
        raise ControlError(400, "bad_currency", "the wrong asset must differ from pay_currency")
    if amount <= 0:
        raise ControlError(400, "bad_amount", "amount must be positive")
    stop_autoplay(payment)
    payment.wrong_asset_currency = currency.code
    payment.wrong_asset_amount = amount
    payment.payin_hash = tx_hash or catalogue.random_hash(f"{payment.id}:payin", currency.network)
    now = state.now()
    if auto_process:
        _switch_asset(payment)
        walk(state, payment, [CONFIRMING, CONFIRMED, SENDING, FINISHED], now)
    else:
        set_status(state, payment, WRONG_ASSET_CONFIRMED, now)


def _switch_asset(payment: Payment) -> None:
    """Re-denominate the payment in the deposited asset (``pay_amount`` stays as created)."""
    if payment.wrong_asset_currency is None or payment.wrong_asset_amount is None:
        raise invalid_transition(f"payment {payment.id} has no wrong-asset deposit")
    payment.pay_currency = payment.wrong_asset_currency
    payment.actually_paid = payment.wrong_asset_amount
    payment.outcome_cache = None
    payment.status_cache = None


def redeposit(state: SandboxState, parent: Payment, amount: Decimal) -> Payment:
    """A repeated deposit to the parent's address: a child payment (spec 3.1 notes)."""
    if parent.status == WAITING:
        raise invalid_transition(f"payment {parent.id} is still waiting; use pay")
    if parent.parent_payment_id is not None:
        raise invalid_transition("re-deposit onto the parent payment, not a child")
    if amount <= 0:
        raise ControlError(400, "bad_amount", "amount must be positive")
    now = state.now()
    child = Payment(
        id=state.next_id("payment"),
        status=CONFIRMING,
        price_amount=catalogue.convert(amount, parent.pay_currency, parent.price_currency).quantize(
            Decimal(1).scaleb(-catalogue.precision_of(parent.price_currency))
        ),
        price_currency=parent.price_currency,
        pay_amount=amount,
        pay_currency=parent.pay_currency,
        pay_address=parent.pay_address,
        outcome_currency=parent.outcome_currency,
        created_at=now,
        updated_at=now,
        valid_until=parent.valid_until,
        expiration_estimate_date=parent.expiration_estimate_date,
        purchase_id=parent.purchase_id,
        actually_paid=amount,
        order_id=parent.order_id,
        order_description=parent.order_description,
        ipn_callback_url=parent.ipn_callback_url,
        payin_extra_id=parent.payin_extra_id,
        parent_payment_id=parent.id,
        origin_type="REPEATED",
        redeposit_status=state.quirks["redeposit_status"],
        autoplay=True,
    )
    child.payin_hash = hash_for(child, "payin")
    state.add_payment(child)
    parent.children.append(child.id)
    parent.touch(max(now, parent.updated_at))
    send_ipn(state, child)
    send_ipn(state, parent)  # GUESS: the parent is re-notified because payment_extra_ids changed
    state.schedule(now + state.config.step_seconds, "payment_step", child.id, child.schedule_token)
    return child
