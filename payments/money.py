"""Decimal money helpers: the cent, and how amounts are shown."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

CENT = Decimal("0.01")


def is_cents(value: Decimal) -> bool:
    """True when value is finite and has no more than two decimal places."""
    try:
        return value.is_finite() and value == value.quantize(CENT)
    except InvalidOperation:  # too many digits to hold in cents at all
        return False


def format_usd(value: Decimal | None) -> str:
    """'$1,234.50' style, with the sign in front of the dollar sign when negative."""
    if value is None:
        return "—"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value).quantize(CENT):,}"


def format_usd_signed(value: Decimal) -> str:
    """'+$99.99' for credits, '-$50.00' for debits."""
    sign = "+" if value > 0 else "-" if value < 0 else ""
    return f"{sign}${abs(value).quantize(CENT):,}"
