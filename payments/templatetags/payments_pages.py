"""Filters of the end users' pages: ``{% load payments_pages %}`` (payments.pages.formatting)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django import template

from payments.models import Payment
from payments.pages import formatting

register = template.Library()


@register.filter
def usd(value: Any) -> str:
    """``{{ amount|usd }}``: '$12.34'."""
    return formatting.usd(value)


@register.filter
def crypto(value: Decimal | None) -> str:
    """``{{ payment.pay_amount|crypto }}``: the amount as stored, trailing zeros stripped."""
    return formatting.crypto(value)


@register.filter
def balance_usd(user: Any) -> Decimal:
    """``{{ request.user|balance_usd|usd }}``: the signed-in user's balance (read only)."""
    return formatting.balance_of(user)


@register.filter
def seconds_until(moment: datetime | None) -> int | None:
    return formatting.seconds_until(moment)


@register.filter
def time_left(moment: datetime | None) -> str:
    """``{{ payment.expires_at|time_left }}``: '14:05 left', 'Expired'."""
    return formatting.time_left(formatting.seconds_until(moment))


@register.filter
def received(payment: Payment) -> str:
    return formatting.received(payment)


@register.filter
def credited_usd(payment: Payment) -> Decimal | None:
    return formatting.credited_usd(payment)


@register.filter
def registration_pending(payment: Payment) -> bool:
    return formatting.registration_pending(payment)


@register.filter
def registration_notice(payment: Payment) -> str:
    return formatting.registration_notice(payment)


@register.filter
def explorer_url(currency: Any, tx_hash: str) -> str | None:
    """``{{ withdrawal.currency|explorer_url:withdrawal.transaction_hash }}``."""
    return currency.explorer_url(tx_hash) if currency is not None else None
