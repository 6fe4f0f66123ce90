"""Serializers of the user API (the seed's PaymentSerializer and BalanceSerializer, and more)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from payments.models import Currency, Payment, Transaction, UserBalance, WithdrawalRequest
from payments.models.payment import PaymentStatus


class CurrencySerializer(serializers.ModelSerializer):
    class Meta:
        model = Currency
        fields = [
            "code",
            "name",
            "token",
            "network",
            "display_name",
            "decimal_places",
            "min_amount_usd",
            "extra_id_required",
        ]
        read_only_fields = fields


class PaymentSerializer(serializers.ModelSerializer):
    currency: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="code", read_only=True
    )
    currency_name = serializers.CharField(source="currency.display_name", read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    qr_data = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="What a wallet scans to pay: a payment URI or the address; null until known.",
    )
    actual_amount = serializers.DecimalField(
        max_digits=36,
        decimal_places=18,
        read_only=True,
        allow_null=True,
        help_text="Crypto received so far, as NowPayments reports it.",
    )
    actual_amount_usd = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        read_only=True,
        allow_null=True,
        help_text="What the crypto received is worth in USD, as NowPayments reports it.",
    )
    credited_amount_usd = serializers.SerializerMethodField(
        help_text="What this deposit added to the balance (USD); null until it is completed."
    )
    review_reason = serializers.CharField(
        read_only=True, help_text="Why the payment waits for an operator (status review)."
    )
    explorer_url = serializers.SerializerMethodField(
        help_text="The transaction on a block explorer, once there is a hash."
    )

    class Meta:
        model = Payment
        fields = [
            "id",
            "internal_payment_id",
            "amount_usd",
            "currency",
            "currency_name",
            "status",
            "status_display",
            "pay_amount",
            "pay_address",
            "pay_extra_id",
            "qr_data",
            "actual_amount",
            "actual_amount_usd",
            "credited_amount_usd",
            "review_reason",
            "transaction_hash",
            "explorer_url",
            "description",
            "expires_at",
            "created_at",
            "completed_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True))
    def get_credited_amount_usd(self, payment: Payment) -> str | None:
        if payment.status != PaymentStatus.COMPLETED:
            return None
        return f"{payment.credited_amount_usd:.2f}"

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_explorer_url(self, payment: Payment) -> str | None:
        return payment.get_explorer_link()


class DepositRequestSerializer(serializers.Serializer):
    amount_usd = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        help_text="The price in USD, to the cent; at least the currency's min_amount_usd.",
    )
    currency = serializers.CharField(
        max_length=32, help_text="The code of an active currency (GET currencies/)."
    )
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)


class BalanceSerializer(serializers.ModelSerializer):
    class Meta:
        model = UserBalance
        fields = ["balance_usd", "total_deposited", "total_withdrawn", "last_transaction_at"]
        read_only_fields = fields


class TransactionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Transaction
        fields = [
            "id",
            "transaction_type",
            "amount_usd",
            "balance_after",
            "payment_id",
            "withdrawal_request_id",
            "description",
            "created_at",
        ]
        read_only_fields = fields


class WithdrawalSerializer(serializers.ModelSerializer):
    currency: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="code", read_only=True
    )
    total_fee_usd = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)
    final_amount_usd = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True)
    can_be_cancelled = serializers.BooleanField(read_only=True)

    class Meta:
        model = WithdrawalRequest
        fields = [
            "id",
            "internal_withdrawal_id",
            "amount_usd",
            "currency",
            "wallet_address",
            "wallet_extra_id",
            "network_fee_usd",
            "service_fee_usd",
            "total_fee_usd",
            "final_amount_usd",
            "status",
            "transaction_hash",
            "rejection_reason",
            "can_be_cancelled",
            "created_at",
            "completed_at",
        ]
        read_only_fields = fields


class WithdrawalRequestSerializer(serializers.Serializer):
    amount_usd = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal("0.01")
    )
    currency = serializers.CharField(max_length=32)
    wallet_address = serializers.CharField(max_length=255)
    wallet_extra_id = serializers.CharField(max_length=255, required=False, allow_blank=True)

    def validate_currency(self, value: str) -> Currency:
        currency = Currency.objects.filter(code=value.strip().upper(), is_active=True).first()
        if currency is None:
            raise serializers.ValidationError("Not a currency you can withdraw in.")
        return currency


class QuoteQuerySerializer(serializers.Serializer):
    currency = serializers.CharField(max_length=32, help_text="The currency's code.")
    amount_usd = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        help_text="The amount to withdraw in USD, to the cent (fees come out of it).",
    )


class QuoteSerializer(serializers.Serializer):
    """What a withdrawal would cost and pay out (payments.services.withdrawals.fees)."""

    currency = serializers.CharField(source="currency_code")
    amount_usd = serializers.DecimalField(max_digits=12, decimal_places=2)
    network_fee_usd = serializers.DecimalField(max_digits=12, decimal_places=2)
    service_fee_usd = serializers.DecimalField(max_digits=12, decimal_places=2)
    total_fee_usd = serializers.DecimalField(max_digits=12, decimal_places=2)
    final_amount_usd = serializers.DecimalField(
        max_digits=12, decimal_places=2, help_text="What the wallet receives, in USD."
    )
    minimum_usd = serializers.DecimalField(
        max_digits=12, decimal_places=2, help_text="The smallest amount this currency takes."
    )
    payout_minimum_usd = serializers.DecimalField(max_digits=12, decimal_places=2)
    extra_id_required = serializers.BooleanField(
        help_text="Whether a memo (wallet_extra_id) must go with the address."
    )
    extra_id_name = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """The body of every error; its full schema (with "errors") is payments.api.schema's."""

    code = serializers.CharField()
    message = serializers.CharField()
