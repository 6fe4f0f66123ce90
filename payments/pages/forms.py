"""The forms of the user pages: what a deposit and a withdrawal request must be, before any
service sees them."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django import forms

from payments.models import Currency
from payments.money import format_usd

CENT = Decimal("0.01")


def _amount_field(label: str) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        max_digits=12,
        decimal_places=2,
        min_value=CENT,
        # Text, not type=number: the server says what is wrong with an amount, in words.
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        error_messages={
            "invalid": "Enter an amount in USD, such as 25 or 25.50.",
            "max_decimal_places": "Enter whole cents: at most 2 decimal places.",
            "max_digits": "That amount is too large.",
            "max_whole_digits": "That amount is too large.",
            "min_value": "Enter an amount greater than zero.",
        },
    )


class DepositForm(forms.Form):
    amount = _amount_field("Amount (USD)")
    currency = forms.ChoiceField(
        label="Pay with",
        error_messages={"invalid_choice": "Choose one of the currencies offered."},
    )

    def __init__(self, *args: object, currencies: Iterable[Currency], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["currency"].choices = [  # type: ignore[attr-defined]
            (c.code, f"{c.display_name} (minimum {format_usd(c.min_amount_usd)})")
            for c in currencies
        ]

    def clean_amount(self) -> Decimal:
        return Decimal(self.cleaned_data["amount"]).quantize(CENT)


class WithdrawalForm(forms.Form):
    amount_usd = _amount_field("Amount (USD)")
    currency = forms.ChoiceField(
        label="Receive in",
        error_messages={"invalid_choice": "Choose one of the currencies offered."},
    )
    wallet_address = forms.CharField(
        label="Wallet address",
        max_length=255,
        error_messages={"required": "Enter the address of the wallet to pay."},
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    wallet_extra_id = forms.CharField(
        label="Memo / destination tag (only if your wallet needs one)",
        max_length=255,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args: object, currencies: Iterable[Currency], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["currency"].choices = [  # type: ignore[attr-defined]
            (c.code, c.display_name) for c in currencies
        ]

    def clean_amount_usd(self) -> Decimal:
        return Decimal(self.cleaned_data["amount_usd"]).quantize(CENT)


def form_errors(form: forms.Form) -> list[str]:
    """Every error of a bound form as a sentence naming its field."""
    found: list[str] = []
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else None
        for message in errors:
            found.append(f"{label}: {message}" if label else str(message))
    return found
