"""JSON shapes of sandbox records, with the type quirks of the real API (spec 1.5, 2.7-2.15)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sandbox import catalogue
from sandbox.clock import iso
from sandbox.models import Batch, Invoice, Payment, Withdrawal

SANDBOX_INVOICE_URL = "https://sandbox.nowpayments.io/payment/?iid={id}"
PAYMENT_TYPE = "crypto2crypto"


def plain(amount: Decimal) -> str:
    """``Decimal("2E+2")`` -> ``"200"``: the string form payout amounts use."""
    text = format(amount.normalize(), "f")
    return "0" if text in ("-0", "") else text


def fees(payment: Payment) -> tuple[Decimal, Decimal, Decimal]:
    """(depositFee, withdrawalFee, serviceFee) in the pay currency."""
    currency = catalogue.BY_CODE[payment.pay_currency]
    basis = payment.actually_paid if payment.actually_paid > 0 else payment.pay_amount
    service = currency.round_up(basis * catalogue.SERVICE_FEE_RATE)
    return currency.deposit_fee, currency.withdrawal_fee, service


def outcome_amount(payment: Payment) -> Decimal:
    """What reaches the merchant: the paid (or expected) amount less fees, converted."""
    if payment.outcome_cache is not None:
        return payment.outcome_cache
    basis = payment.actually_paid if payment.actually_paid > 0 else payment.pay_amount
    net = max(basis - sum(fees(payment)), Decimal(0))
    converted = catalogue.convert(net, payment.pay_currency, payment.outcome_currency)
    payment.outcome_cache = catalogue.BY_CODE[payment.outcome_currency].round_down(converted)
    return payment.outcome_cache


def actually_paid_at_fiat(payment: Payment) -> Decimal:
    value = catalogue.convert(payment.actually_paid, payment.pay_currency, payment.price_currency)
    quantum = Decimal(1).scaleb(-catalogue.precision_of(payment.price_currency))
    return value.quantize(quantum)


def _pay_amount(payment: Payment, as_string: bool) -> Decimal | str:
    return plain(payment.pay_amount) if as_string else payment.pay_amount


def payment_created(payment: Payment, *, pay_amount_as_string: bool) -> dict[str, Any]:
    """The 201 body of POST /v1/payment: ``payment_id`` and ``purchase_id`` are strings."""
    currency = catalogue.BY_CODE[payment.pay_currency]
    return {
        "payment_id": str(payment.id),
        "payment_status": payment.status,
        "pay_address": payment.pay_address,
        "price_amount": payment.price_amount,
        "price_currency": payment.price_currency,
        "pay_amount": _pay_amount(payment, pay_amount_as_string),
        "amount_received": outcome_amount(payment),
        "pay_currency": payment.pay_currency,
        "order_id": payment.order_id,
        "order_description": payment.order_description,
        "ipn_callback_url": payment.ipn_callback_url,
        "created_at": iso(payment.created_at),
        "updated_at": iso(payment.updated_at),
        "purchase_id": str(payment.purchase_id),
        "payin_extra_id": payment.payin_extra_id,
        "smart_contract": currency.smart_contract or "",
        "network": currency.network,
        "network_precision": currency.network_precision,
        "time_limit": None,
        "burning_percent": None,
        "expiration_estimate_date": iso(payment.expiration_estimate_date),
        "is_fixed_rate": payment.is_fixed_rate,
        "is_fee_paid_by_user": payment.is_fee_paid_by_user,
        "valid_until": iso(payment.valid_until),
        "type": PAYMENT_TYPE,
    }


def payment_status(payment: Payment, *, pay_amount_as_string: bool) -> dict[str, Any]:
    """GET /v1/payment/{id} and list entries: number ``payment_id``, ``burning_percent`` "null"."""
    return {
        "payment_id": payment.id,
        "invoice_id": payment.invoice_id,
        "payment_status": payment.status,
        "pay_address": payment.pay_address,
        "payin_extra_id": payment.payin_extra_id,
        "price_amount": payment.price_amount,
        "price_currency": payment.price_currency,
        "pay_amount": _pay_amount(payment, pay_amount_as_string),
        "actually_paid": payment.actually_paid,
        "actually_paid_at_fiat": actually_paid_at_fiat(payment),
        "pay_currency": payment.pay_currency,
        "order_id": payment.order_id,
        "order_description": payment.order_description,
        "purchase_id": payment.purchase_id,
        "outcome_amount": outcome_amount(payment),
        "outcome_currency": payment.outcome_currency,
        "payout_hash": payment.payout_hash,
        "payin_hash": payment.payin_hash,
        "created_at": iso(payment.created_at),
        "updated_at": iso(payment.updated_at),
        "burning_percent": "null",
        "type": PAYMENT_TYPE,
        "payment_extra_ids": list(payment.children) or None,
        "parent_payment_id": payment.parent_payment_id,
        "origin_type": payment.origin_type,
    }


def payment_ipn(payment: Payment, *, pay_amount_as_string: bool) -> dict[str, Any]:
    """The payment IPN (spec 4.3), in the docs' key order; it is signed after sorting."""
    deposit_fee, withdrawal_fee, service_fee = fees(payment)
    return {
        "payment_id": payment.id,
        "parent_payment_id": payment.parent_payment_id,
        "invoice_id": payment.invoice_id,
        "payment_status": payment.status,
        "pay_address": payment.pay_address,
        "payin_extra_id": payment.payin_extra_id,
        "price_amount": payment.price_amount,
        "price_currency": payment.price_currency,
        "pay_amount": _pay_amount(payment, pay_amount_as_string),
        "actually_paid": payment.actually_paid,
        "actually_paid_at_fiat": actually_paid_at_fiat(payment),
        "pay_currency": payment.pay_currency,
        "order_id": payment.order_id,
        "order_description": payment.order_description,
        "purchase_id": str(payment.purchase_id),
        "created_at": iso(payment.created_at),
        "updated_at": iso(payment.updated_at),
        "outcome_amount": outcome_amount(payment),
        "outcome_currency": payment.outcome_currency,
        "payment_extra_ids": list(payment.children) or None,
        "fee": {
            "currency": payment.pay_currency,
            "depositFee": deposit_fee,
            "withdrawalFee": withdrawal_fee,
            "serviceFee": service_fee,
        },
    }


def invoice(record: Invoice) -> dict[str, Any]:
    """201 body of POST /v1/invoice: ``id`` and ``price_amount`` are strings."""
    created = iso(record.created_at)
    return {
        "id": str(record.id),
        "token_id": record.token_id,
        "order_id": record.order_id,
        "order_description": record.order_description,
        "price_amount": plain(record.price_amount),
        "price_currency": record.price_currency,
        "pay_currency": record.pay_currency,
        "ipn_callback_url": record.ipn_callback_url,
        "invoice_url": SANDBOX_INVOICE_URL.format(id=record.id),
        "success_url": record.success_url,
        "cancel_url": record.cancel_url,
        "partially_paid_url": record.partially_paid_url,
        "payout_currency": None,
        "created_at": created,
        "updated_at": created,
        "is_fixed_rate": record.is_fixed_rate,
        "is_fee_paid_by_user": record.is_fee_paid_by_user,
    }


def withdrawal(item: Withdrawal, *, camel_timestamps: bool = False) -> dict[str, Any]:
    """A withdrawal as payout responses show it: string ids and amount, upper-case status."""
    body: dict[str, Any] = {
        "is_request_payouts": False,
        "id": str(item.id),
        "address": item.address,
        "currency": item.currency,
        "amount": plain(item.amount),
        "batch_withdrawal_id": str(item.batch_id),
        "ipn_callback_url": item.ipn_callback_url,
        "status": item.status,
        "extra_id": item.extra_id,
        "hash": item.hash,
        "error": item.error,
        "payout_description": item.payout_description,
        "unique_external_id": item.unique_external_id,
    }
    stamps = (
        ("created_at", "createdAt", item.created_at),
        ("requested_at", "requestedAt", item.requested_at),
        ("updated_at", "updatedAt", item.updated_at),
    )
    for snake, camel, value in stamps:
        body[camel if camel_timestamps else snake] = iso(value)
    return body


def batch(record: Batch, items: list[Withdrawal], *, mixed_timestamps: bool) -> dict[str, Any]:
    """POST /v1/payout: the docs' example switches to camelCase stamps after the first item."""
    return {
        "id": str(record.id),
        "withdrawals": [
            withdrawal(item, camel_timestamps=mixed_timestamps and index > 0)
            for index, item in enumerate(items)
        ],
    }


def withdrawal_ipn(item: Withdrawal) -> dict[str, Any]:
    """The withdrawal IPN (spec 4.3)."""
    return {
        "id": str(item.id),
        "batch_withdrawal_id": str(item.batch_id),
        "status": item.status,
        "error": item.error,
        "currency": item.currency,
        "amount": plain(item.amount),
        "address": item.address,
        "fee": item.fee,
        "extra_id": item.extra_id,
        "hash": item.hash,
        "ipn_callback_url": item.ipn_callback_url,
        "created_at": iso(item.created_at),
        "requested_at": iso(item.requested_at),
        "updated_at": iso(item.updated_at),
    }
