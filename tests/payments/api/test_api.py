"""The user API over HTTP: stable 4xx codes, nothing changed on a refusal, own data only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from payments import ledger
from payments.models import Payment, UserBalance, WithdrawalRequest
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

API = "/payments/api"


@pytest.fixture
def user():
    return UserFactory()


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_api_needs_a_signed_in_user():
    response = APIClient().get(f"{API}/balance/")
    assert response.status_code in (401, 403)
    assert response.json()["code"] in ("not_authenticated", "authentication_failed")


def test_create_a_deposit(api, sandbox, usdt):
    response = api.post(f"{API}/payments/", {"amount_usd": "25.00", "currency": "usdttrc20"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending"
    assert body["currency"] == "USDTTRC20"
    assert body["currency_name"] == "USDT (TRC20)"
    assert body["pay_address"]
    assert body["amount_usd"] == "25.00"
    assert (
        api.get(f"{API}/payments/{body['id']}/").json()["internal_payment_id"]
        == body["internal_payment_id"]
    )


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        ({"amount_usd": "abc", "currency": "USDTTRC20"}, 400, "invalid"),
        ({"amount_usd": "1.001", "currency": "USDTTRC20"}, 400, "invalid"),
        ({"amount_usd": "0.50", "currency": "USDTTRC20"}, 400, "amount_below_minimum"),
        ({"amount_usd": "25.00", "currency": "NOPE"}, 400, "currency_unavailable"),
    ],
)
def test_bad_deposits_get_a_stable_code_and_store_nothing(api, sandbox, usdt, data, status, code):
    response = api.post(f"{API}/payments/", data)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert not Payment.objects.exists()


def test_provider_outage_is_a_503_and_stores_nothing(api, sandbox, usdt):
    sandbox.control.set_fault("http_500", count=1, path="/v1/payment")
    response = api.post(f"{API}/payments/", {"amount_usd": "25.00", "currency": "USDTTRC20"})
    assert response.status_code == 503
    assert response.json()["code"] == "provider_unavailable"
    assert not Payment.objects.exists()


def test_users_see_only_their_own_payments(api, user, sandbox, usdt):
    from tests.factories import PaymentFactory

    mine = PaymentFactory(user=user, currency=usdt)
    theirs = PaymentFactory(currency=usdt)
    listed = [p["id"] for p in api.get(f"{API}/payments/").json()["results"]]
    assert listed == [str(mine.pk)]
    assert api.get(f"{API}/payments/{theirs.pk}/").status_code == 404


def test_balance_and_history(api, user):
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("10.00"), idempotency_key="a")
    assert api.get(f"{API}/balance/").json()["balance_usd"] == "10.00"
    history = api.get(f"{API}/transactions/").json()["results"]
    assert [(t["transaction_type"], t["amount_usd"]) for t in history] == [("deposit", "10.00")]


def test_withdraw_and_cancel(api, user, usdt):
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("30.00"), idempotency_key="a")
    response = api.post(
        f"{API}/withdrawals/",
        {"amount_usd": "20.00", "currency": "USDTTRC20", "wallet_address": "TAddr1"},
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["final_amount_usd"], body["total_fee_usd"]) == ("18.50", "1.50")
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("10.00")
    cancelled = api.post(f"{API}/withdrawals/{body['id']}/cancel/")
    assert cancelled.json()["status"] == "cancelled"
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("30.00")
    again = api.post(f"{API}/withdrawals/{body['id']}/cancel/")
    assert (again.status_code, again.json()["code"]) == (409, "invalid_transition")
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("30.00")


def test_overdrawing_withdrawal_is_a_409_and_changes_nothing(api, user, usdt):
    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("5.00"), idempotency_key="a")
    response = api.post(
        f"{API}/withdrawals/",
        {"amount_usd": "5.01", "currency": "USDTTRC20", "wallet_address": "TAddr1"},
    )
    assert (response.status_code, response.json()["code"]) == (409, "insufficient_funds")
    assert not WithdrawalRequest.objects.exists()
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("5.00")


def test_the_seed_drf_example_runs_as_written(user, usdt):
    namespace: dict = {}
    exec(  # noqa: S102 - the seed's own example, with django_cfg.apps.payments -> payments
        """
from rest_framework import serializers, viewsets
from payments.models import Payment, UserBalance
class PaymentSerializer(serializers.ModelSerializer):
    currency_name = serializers.CharField(source='currency.display_name', read_only=True)
    status_display = serializers.CharField(source='get_status_display', read_only=True)
    class Meta:
        model = Payment
        fields = [
            'id', 'internal_payment_id', 'amount_usd', 'currency', 'currency_name',
            'status', 'status_display', 'pay_address', 'transaction_hash',
            'created_at', 'completed_at'
        ]
        read_only_fields = ['internal_payment_id', 'pay_address', 'transaction_hash']
class BalanceSerializer(serializers.ModelSerializer):
    class Meta:
        model = UserBalance
        fields = ['balance_usd', 'total_deposited', 'total_withdrawn', 'last_transaction_at']
        read_only_fields = ['__all__']
class PaymentViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = PaymentSerializer
    def get_queryset(self):
        return Payment.objects.filter(user=self.request.user)
""",
        namespace,
    )
    payment = Payment.objects.create(user=user, amount_usd=Decimal("99.99"), currency=usdt)
    data = namespace["PaymentSerializer"](payment).data
    assert data["currency_name"] == "USDT (TRC20)"
    assert data["status_display"] == "Pending"
    assert data["amount_usd"] == "99.99"
    balance = UserBalance.objects.get_or_create_for_user(user)
    assert namespace["BalanceSerializer"](balance).data["balance_usd"] == "0.00"

    from rest_framework.test import APIRequestFactory, force_authenticate

    view = namespace["PaymentViewSet"].as_view({"get": "list"})
    request = APIRequestFactory().get("/")
    force_authenticate(request, user=user)
    response = view(request)
    assert [row["id"] for row in response.data["results"]] == [str(payment.pk)]
