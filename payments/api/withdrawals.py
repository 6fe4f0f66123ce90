"""The user API's withdrawals: request one (its amount is held at once), list, cancel while
pending, and the fee quote before requesting."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from payments.api import serializers as s
from payments.api.filters import ListFilters, choices_of
from payments.api.idempotency import IdempotentMixin
from payments.api.throttling import CreateThrottle
from payments.api.views import FilteredListMixin, user_id_of
from payments.models import WithdrawalRequest
from payments.services import withdrawals as withdrawal_service

WITHDRAWAL_FILTERS = ListFilters(
    choices={"status": ("status", choices_of(WithdrawalRequest, "status"))},
    currency_field="currency__code",
)


@extend_schema_view(
    list=extend_schema(
        summary="Your withdrawals, newest first",
        parameters=WITHDRAWAL_FILTERS.schema_parameters(),
    ),
    retrieve=extend_schema(summary="One of your withdrawals"),
    create=extend_schema(
        summary="Request a withdrawal: its amount is held from the balance at once",
        request=s.WithdrawalRequestSerializer,
        responses={201: s.WithdrawalSerializer},
        examples=[
            OpenApiExample(
                "20 USD to a Tron address",
                value={
                    "amount_usd": "20.00",
                    "currency": "USDTTRC20",
                    "wallet_address": "TXYZ1234567890abcdefghijklmnopqrst",
                },
                request_only=True,
            )
        ],
    ),
    cancel=extend_schema(
        operation_id="withdrawals_cancel",
        summary="Cancel a pending withdrawal: the hold comes back",
        request=None,
        responses={200: s.WithdrawalSerializer},
    ),
    quote=extend_schema(
        operation_id="withdrawals_quote",
        summary="What a withdrawal would cost and pay out",
        parameters=[s.QuoteQuerySerializer],
        responses={200: s.QuoteSerializer},
    ),
)
class WithdrawalViewSet(
    IdempotentMixin, FilteredListMixin, mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet
):
    """Your withdrawals. A request holds its amount from your balance at once; the fees come
    out of it (see the quote); an operator approves it; a pending one you may cancel."""

    serializer_class = s.WithdrawalSerializer
    list_filters = WITHDRAWAL_FILTERS
    throttle_classes = [CreateThrottle]
    throttle_scopes = {"create": "withdrawal_create"}

    def get_queryset(self) -> QuerySet[WithdrawalRequest]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator's look
            return WithdrawalRequest.objects.none()
        return (
            WithdrawalRequest.objects.filter(user_id=user_id_of(self.request))
            .select_related("currency")
            .order_by("-created_at")
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = s.WithdrawalRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        # The fees are the currency's quote (withdrawal_quote), worked out by the lifecycle.
        withdrawal = withdrawal_service.withdrawal_create(
            user_id=user_id_of(request),
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

    @action(detail=False, methods=["get"])
    def quote(self, request: Request) -> Response:
        form = s.QuoteQuerySerializer(data=request.query_params)
        form.is_valid(raise_exception=True)
        quote = withdrawal_service.withdrawal_quote(
            currency_code=form.validated_data["currency"],
            amount_usd=form.validated_data["amount_usd"],
        )
        return Response(s.QuoteSerializer(quote).data)
