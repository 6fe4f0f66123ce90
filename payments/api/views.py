"""The user API: deposits, balance, ledger history and withdrawals of the signed-in user."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from payments.api import serializers as s
from payments.models import Currency, Payment, Transaction, UserBalance, WithdrawalRequest
from payments.services import deposits as payment_service
from payments.services import withdrawals as withdrawal_service


class CurrencyViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.CurrencySerializer
    pagination_class = None
    lookup_field = "code"

    def get_queryset(self) -> QuerySet[Currency]:
        return Currency.objects.available()


class PaymentViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = s.PaymentSerializer

    def get_queryset(self) -> QuerySet[Payment]:
        return Payment.objects.filter(user_id=_user_id(self.request)).select_related("currency")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = s.DepositRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        payment = payment_service.payment_create(
            user_id=_user_id(request),
            amount_usd=form.validated_data["amount_usd"],
            currency_code=form.validated_data["currency"],
            description=form.validated_data.get("description", ""),
        )
        return Response(s.PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)


class BalanceView(APIView):
    def get(self, request: Request) -> Response:
        balance = UserBalance.objects.get_or_create_for_user(request.user)
        return Response(s.BalanceSerializer(balance).data)


class TransactionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.TransactionSerializer

    def get_queryset(self) -> QuerySet[Transaction]:
        return Transaction.objects.filter(user_id=_user_id(self.request)).order_by("-sequence")


class WithdrawalViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = s.WithdrawalSerializer

    def get_queryset(self) -> QuerySet[WithdrawalRequest]:
        return WithdrawalRequest.objects.filter(user_id=_user_id(self.request)).select_related(
            "currency"
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = s.WithdrawalRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        # The fees are the currency's quote (withdrawal_quote), worked out by the lifecycle.
        withdrawal = withdrawal_service.withdrawal_create(
            user_id=_user_id(request),
            amount_usd=data["amount_usd"],
            currency_id=data["currency"].pk,
            wallet_address=data["wallet_address"],
            wallet_extra_id=data.get("wallet_extra_id", ""),
        )
        return Response(s.WithdrawalSerializer(withdrawal).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        withdrawal = self.get_object()
        withdrawal = withdrawal_service.withdrawal_cancel(
            withdrawal_id=withdrawal.pk, user=request.user
        )
        return Response(s.WithdrawalSerializer(withdrawal).data)


def _user_id(request: Request) -> int:
    """The signed-in user's id (every view here requires authentication)."""
    user_id = request.user.pk
    assert user_id is not None  # noqa: S101 - IsAuthenticated guarantees it
    return int(user_id)
