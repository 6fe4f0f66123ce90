"""factory_boy factories for users and the payments models."""

from __future__ import annotations

import socket
from decimal import Decimal
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.test import override_settings

from payments.models import Currency, Payment


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-for-tests-only")


class CurrencyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Currency
        django_get_or_create = ("code",)

    code = "USDTTRC20"
    name = "Tether USD (TRC20)"
    token = "USDT"
    network = "TRC20"
    decimal_places = 6
    min_amount_usd = Decimal("1.00")


class PaymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Payment

    user = factory.SubFactory(UserFactory)
    currency = factory.SubFactory(CurrencyFactory)
    amount_usd = Decimal("99.99")
    description = "test deposit"


def unregistered_payment(**kwargs: Any) -> Payment:
    """A payment made through the ORM while NowPayments could not be reached: what the at-once
    registration leaves to the worker sweep (pending, no provider id, no claim on it)."""
    with socket.socket() as unreachable:  # bound, never listening: connections are refused
        unreachable.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unreachable.getsockname()[1]}/v1"
        with override_settings(NOWPAYMENTS_API_URL=url):
            payment = PaymentFactory(**kwargs)
    assert payment.provider_payment_id is None
    return payment
