"""How the user pages show amounts, time left and a user's balance (the templates' filters and
the status endpoint say the same thing the same way)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from payments.models import Payment, Transaction, UserBalance
from payments.models.transaction import TransactionType
from payments.money import format_usd

ZERO = Decimal("0.00")


def usd(value: Any) -> str:
    """'$1,234.50'; '—' for nothing."""
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            value = Decimal(value)
        except ArithmeticError:
            return "—"
    if not isinstance(value, Decimal) or not value.is_finite():
        return "—"
    return format_usd(value)


def crypto(value: Decimal | None) -> str:
    """A crypto amount as stored, trailing zeros stripped: '12.5', '0.00031', '10'."""
    if not isinstance(value, Decimal) or not value.is_finite():
        return "—"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def seconds_until(moment: datetime | None) -> int | None:
    """Whole seconds from now until ``moment`` (0 once past); None without one."""
    if moment is None:
        return None
    return max(0, int((moment - timezone.now()).total_seconds()))


def time_left(seconds: int | None) -> str:
    """'14:05 left', '1:02:03 left', 'Expired'; '—' without a deadline (as payment.js says)."""
    if seconds is None:
        return "—"
    if seconds <= 0:
        return "Expired"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d} left"
    return f"{minutes}:{secs:02d} left"


def balance_of(user: Any) -> Decimal:
    """The user's balance as the ledger keeps it (read only: no row is created)."""
    user_id = getattr(user, "pk", None)
    if user_id is None:
        return ZERO
    found = UserBalance.objects.filter(user_id=user_id).values_list("balance_usd", flat=True)
    return next(iter(found), ZERO)


def received(payment: Payment) -> str:
    """What has arrived: '12.5 USDT ($12.50)', or '—' before NowPayments reports any."""
    if payment.actual_amount is None:
        return "—"
    text = f"{crypto(payment.actual_amount)} {payment.currency.token}"
    if payment.actual_amount_usd is not None:
        text += f" ({usd(payment.actual_amount_usd)})"
    return text


def credited_usd(payment: Payment) -> Decimal | None:
    """What the deposit put on the balance: its DEPOSIT posting, or None before it is credited."""
    found = Transaction.objects.filter(
        payment_id=payment.pk, transaction_type=TransactionType.DEPOSIT
    ).values_list("amount_usd", flat=True)
    return next(iter(found), None)


def registration_pending(payment: Payment) -> bool:
    """A pending payment with no address yet: NowPayments has not registered it (yet)."""
    return payment.status == Payment.PaymentStatus.PENDING and not payment.pay_address


def registration_notice(payment: Payment) -> str:
    """What the page says while the address is not there."""
    if payment.provider_error:
        return (
            "NowPayments could not be reached; a worker will retry shortly and the address "
            "will appear here."
        )
    if payment.provider_requested_at is not None:
        return "Registering this deposit with NowPayments; the address will appear here."
    return "This deposit waits for NowPayments; a worker will register it shortly."
