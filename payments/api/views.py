"""The user API: currencies, deposits, balance and ledger history of the signed-in user.

Every view class lists IdempotentMixin first (an Idempotency-Key on any POST). Users see
only their own rows, staff included; someone else's row is a 404 like a missing one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from payments.api import serializers as s
from payments.api.filters import ListFilters, choices_of
from payments.api.idempotency import IdempotentMixin
from payments.api.schema import error_responses
from payments.api.throttling import CreateThrottle
from payments.models import Currency, Payment, Transaction, UserBalance
from payments.services import deposits as payment_service

if TYPE_CHECKING:
    _Base = viewsets.GenericViewSet
else:
    _Base = object

_CURRENCY_CODE = re.compile(r"^[A-Za-z0-9]{1,32}$")

PAYMENT_FILTERS = ListFilters(
    choices={"status": ("status", choices_of(Payment, "status"))},
    currency_field="currency__code",
)
TRANSACTION_FILTERS = ListFilters(
    choices={"type": ("transaction_type", choices_of(Transaction, "transaction_type"))},
)


class FilteredListMixin(_Base):
    """Applies the view's ``list_filters`` to its list (and to nothing else)."""

    list_filters: ListFilters | None = None

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        queryset = super().filter_queryset(queryset)
        if self.action == "list" and self.list_filters is not None:
            queryset = self.list_filters.apply(self.request, queryset)
        return queryset


@extend_schema_view(
    list=extend_schema(summary="Currencies you can pay with"),
    retrieve=extend_schema(summary="One currency, by its code"),
)
class CurrencyViewSet(IdempotentMixin, viewsets.ReadOnlyModelViewSet):
    """The currencies a deposit may be made in, with their minimums (not paginated)."""

    serializer_class = s.CurrencySerializer
    pagination_class = None
    lookup_field = "code"
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Currency]:
        return Currency.objects.available()

    def get_object(self) -> Currency:
        code = str(self.kwargs.get("code", ""))
        # Checked before the database sees it (PostgreSQL refuses a NUL, for one).
        currency = None
        if _CURRENCY_CODE.match(code):
            currency = self.get_queryset().filter(code=code.upper()).first()
        if currency is None:
            raise exceptions.NotFound("No currency you can pay with has this code.")
        return currency


@extend_schema_view(
    list=extend_schema(
        summary="Your deposits, newest first", parameters=PAYMENT_FILTERS.schema_parameters()
    ),
    retrieve=extend_schema(summary="One of your deposits"),
    create=extend_schema(
        summary="Create a deposit: its address, crypto amount and expiry",
        request=s.DepositRequestSerializer,
        responses={
            201: s.PaymentSerializer,
            **error_responses(
                {
                    502: "NowPayments refused the deposit (code provider_rejected).",
                    503: "NowPayments could not be reached; nothing was created, retry later "
                    "(code provider_unavailable).",
                }
            ),
        },
        examples=[
            OpenApiExample(
                "25 USD in USDT on Tron",
                value={"amount_usd": "25.00", "currency": "USDTTRC20"},
                request_only=True,
            )
        ],
    ),
)
class PaymentViewSet(
    IdempotentMixin, FilteredListMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet
):
    """Your deposits. A new one is created at NowPayments before the answer, with its address
    and crypto amount; `actual_amount`, `actual_amount_usd` and `credited_amount_usd` say what
    arrived and what it credited."""

    serializer_class = s.PaymentSerializer
    list_filters = PAYMENT_FILTERS
    throttle_classes = [CreateThrottle]
    throttle_scopes = {"create": "deposit_create"}

    def get_queryset(self) -> QuerySet[Payment]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator's look
            return Payment.objects.none()
        return (
            Payment.objects.filter(user_id=user_id_of(self.request))
            .select_related("currency")
            .order_by("-created_at")
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = s.DepositRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        payment = payment_service.payment_create(
            user_id=user_id_of(request),
            amount_usd=form.validated_data["amount_usd"],
            currency_code=form.validated_data["currency"],
            description=form.validated_data.get("description", ""),
        )
        return Response(s.PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)


class BalanceView(IdempotentMixin, APIView):
    """Your balance in USD: the sum of your ledger, with the totals deposited and withdrawn."""

    @extend_schema(summary="Your balance and totals", responses=s.BalanceSerializer)
    def get(self, request: Request) -> Response:
        # A plain read: no row is created, nothing is locked. A user who never had a posting
        # has no balance row yet, which reads as zero (the ledger creates the row with the
        # first posting).
        user_id = user_id_of(request)
        balance = UserBalance.objects.filter(user_id=user_id).first()
        if balance is None:
            balance = UserBalance(user_id=user_id)
        return Response(s.BalanceSerializer(balance).data)


@extend_schema_view(
    list=extend_schema(
        summary="Your ledger, newest first", parameters=TRANSACTION_FILTERS.schema_parameters()
    ),
    retrieve=extend_schema(summary="One line of your ledger"),
)
class TransactionViewSet(IdempotentMixin, FilteredListMixin, viewsets.ReadOnlyModelViewSet):
    """Your ledger: every credit (positive) and debit (negative) with the balance after it."""

    serializer_class = s.TransactionSerializer
    list_filters = TRANSACTION_FILTERS

    def get_queryset(self) -> QuerySet[Transaction]:
        if getattr(self, "swagger_fake_view", False):
            return Transaction.objects.none()
        return Transaction.objects.filter(user_id=user_id_of(self.request)).order_by("-sequence")


def user_id_of(request: Request) -> int:
    """The signed-in user's id (every view here requires authentication)."""
    user_id = request.user.pk
    if user_id is None:
        raise exceptions.NotAuthenticated()
    return int(user_id)
