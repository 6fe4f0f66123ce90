"""Decimal money helpers: quantisation with named rounding, and display formats."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
CRYPTO_QUANTUM = Decimal("1e-18")
USD_DIGITS = 14
CRYPTO_DIGITS = 36


def to_decimal(value: object) -> Decimal:
    """Convert a str/int/Decimal to Decimal; refuse floats, which cannot hold money exactly."""
    if isinstance(value, (bool, float)):
        raise TypeError(f"money must not be a {type(value).__name__}: use Decimal or str")
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None


def usd_down(value: Decimal) -> Decimal:
    """Round a USD amount down to the cent (amounts credited or paid out)."""
    return value.quantize(CENT, rounding=ROUND_DOWN)


def usd_up(value: Decimal) -> Decimal:
    """Round a USD amount up to the cent (fees)."""
    return value.quantize(CENT, rounding=ROUND_UP)


def is_cents(value: Decimal) -> bool:
    """True when value is finite and has no more than two decimal places."""
    return value.is_finite() and value == value.quantize(CENT)


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
