"""Serializers of the user API (the seed's PaymentSerializer and BalanceSerializer, and more)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from payments.models import Currency, Payment, Transaction, UserBalance, WithdrawalRequest


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
            "transaction_hash",
            "expires_at",
            "created_at",
            "completed_at",
        ]
        read_only_fields = fields


class DepositRequestSerializer(serializers.Serializer):
    amount_usd = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal("0.01")
    )
    currency = serializers.CharField(max_length=32)
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

    class Meta:
        model = WithdrawalRequest
        fields = [
            "id",
            "internal_withdrawal_id",
            "amount_usd",
            "currency",
            "wallet_address",
            "network_fee_usd",
            "service_fee_usd",
            "total_fee_usd",
            "final_amount_usd",
            "status",
            "transaction_hash",
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
