"""Every payments changelist runs as many SQL queries at 500 rows as at 5 (no N+1).

The admins are enumerated from ``admin.site._registry``, so a new payments admin is covered
the day it is registered (and fails here until it has a row builder in ``BUILDERS``). The admin
shows 100 rows a page, so 500 rows also exercise the paginator's count query.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from payments import ledger
from payments.models import (
    ApiKey,
    Currency,
    LedgerDrift,
    ManualAdjustment,
    Notification,
    Payment,
    PeriodicRun,
    ProviderEvent,
    Transaction,
    UserBalance,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WithdrawalRequest,
)
from payments.models.common import DecisionOutcome, generate_public_id
from tests.factories import CurrencyFactory, PaymentFactory

pytestmark = pytest.mark.django_db

User = get_user_model()
_serial = itertools.count(1)


def _users(count: int, prefix: str) -> list[Any]:
    """Users without a password hash (fast), named ``<prefix>-<n>``."""
    return User.objects.bulk_create(
        [User(username=f"{prefix}-{next(_serial)}", password="!") for _ in range(count)]
    )


@dataclass
class World:
    """What the rows of every model hang on, made on first use (so it adds no counted rows)."""

    serial: itertools.count = field(default_factory=lambda: itertools.count(1))

    @cached_property
    def users(self) -> list[Any]:
        return _users(5, "owner")

    @cached_property
    def operators(self) -> list[Any]:
        return _users(2, "operator")

    @cached_property
    def currency(self) -> Currency:
        return CurrencyFactory()

    @cached_property
    def payment(self) -> Payment:
        return PaymentFactory(user=self.users[0], currency=self.currency)

    def user(self, i: int) -> Any:
        return self.users[i % len(self.users)]

    def next(self) -> int:
        return next(self.serial)


def build_payments(world: World, count: int) -> None:
    # What Payment.save does for a new row (an id, then one INSERT), in one statement.
    Payment._base_manager.bulk_create(
        [
            Payment(
                user=world.user(i),
                currency=world.currency,
                amount_usd=Decimal("10.00") + i,
                internal_payment_id=generate_public_id("PAY"),
                provider_payment_id=str(9_000_000 + world.next()),
            )
            for i in range(count)
        ]
    )


def build_withdrawals(world: World, count: int) -> None:
    # As the lifecycle creates one (pending row, then its hold posting in the same
    # transaction), for many at once; the chain and hold triggers check every row.
    credits = [
        ledger.Posting(
            user_id=user.pk,
            kind="deposit",
            amount_usd=Decimal("100000.00"),
            idempotency_key=f"funds:{user.pk}:{world.next()}",
        )
        for user in world.users
    ]
    ledger.post_many(credits)
    withdrawals = [
        WithdrawalRequest(
            user=world.user(i),
            currency=world.currency,
            amount_usd=Decimal("20.00"),
            network_fee_usd=Decimal("1.00"),
            service_fee_usd=Decimal("0.50"),
            wallet_address=f"TAddr{world.next()}",
            internal_withdrawal_id=generate_public_id("WD"),
            admin_user=world.operators[0] if i % 2 else None,
        )
        for i in range(count)
    ]
    with transaction.atomic():
        WithdrawalRequest._base_manager.bulk_create(withdrawals)
        ledger.post_many(
            [
                ledger.Posting(
                    user_id=w.user_id,
                    kind="withdrawal",
                    amount_usd=-w.amount_usd,
                    idempotency_key=f"withdrawal:{w.pk}:debit",
                    withdrawal_request_id=w.pk,
                )
                for w in withdrawals
            ]
        )


def build_transactions(world: World, count: int) -> None:
    payment = world.payment
    postings = [
        ledger.Posting(
            user_id=world.user(i).pk,
            kind="bonus",
            amount_usd=Decimal("1.25"),
            idempotency_key=f"bonus:{world.next()}",
            # A link on some rows, so a missing join shows as a query per row.
            payment_id=payment.pk if i % 2 else None,
        )
        for i in range(count)
    ]
    ledger.post_many(postings)


def build_balances(world: World, count: int) -> None:
    users = _users(count, "holder")
    ledger.post_many(
        [
            ledger.Posting(
                user_id=user.pk,
                kind="deposit",
                amount_usd=Decimal("5.00"),
                idempotency_key=f"balance:{user.pk}",
            )
            for user in users
        ]
    )


def build_currencies(world: World, count: int) -> None:
    Currency.objects.bulk_create(
        [
            Currency(code=f"COIN{world.next()}", name="Coin", token="COIN", network="NET")
            for _ in range(count)
        ]
    )


def build_events(world: World, count: int) -> None:
    payment = world.payment
    ProviderEvent.objects.bulk_create(
        [
            ProviderEvent(
                kind="payment",
                dedupe_key=f"event:{(n := world.next())}",
                provider_object_id=str(n),
                provider_status="waiting",
                payment=payment,
                body="{}",
                signature="x",
            )
            for _ in range(count)
        ]
    )


def build_runs(world: World, count: int) -> None:
    PeriodicRun.objects.bulk_create(
        [
            PeriodicRun(name=f"job-{world.next()}", last_result={"checked": 3, "by": {"a": 1}})
            for _ in range(count)
        ]
    )


def build_drifts(world: World, count: int) -> None:
    payment = world.payment
    LedgerDrift.objects.bulk_create(
        [
            LedgerDrift(
                kind="balance_mismatch",
                subject=f"user:{world.next()}",
                user=world.user(i),
                payment=payment,
                expected="1.00",
                actual="2.00",
            )
            for i in range(count)
        ]
    )


def build_manual(world: World, count: int) -> None:
    requester, approver = world.operators
    requests = ManualAdjustment.objects.bulk_create(
        [
            ManualAdjustment(
                user=world.user(i),
                kind="bonus",
                amount_usd=Decimal("3.00"),
                reason="goodwill",
                requested_by=requester,
            )
            for i in range(count)
        ]
    )
    # Every other one applied, as manual_approve leaves it: posted, decided by another.
    applied = requests[::2]
    posted = ledger.post_many(
        [
            ledger.Posting(
                user_id=r.user_id,
                kind="bonus",
                amount_usd=r.amount_usd,
                idempotency_key=f"manual:{r.pk}",
            )
            for r in applied
        ]
    )
    now = timezone.now()
    for request, txn in zip(applied, posted, strict=True):
        request.outcome = DecisionOutcome.APPLIED
        request.decided_by = approver
        request.decided_at = now
        request.transaction = txn
    ManualAdjustment.objects.bulk_update(
        applied, ["outcome", "decided_by", "decided_at", "transaction"]
    )


def build_notifications(world: World, count: int) -> None:
    Notification.objects.bulk_create(
        [
            Notification(
                key=f"note:{world.next()}",
                kind="finding",
                subject="Reconciliation found something",
                body="...",
                recipients=["ops@example.com"],
            )
            for _ in range(count)
        ]
    )


def build_api_keys(world: World, count: int) -> None:
    ApiKey.objects.bulk_create(
        [
            ApiKey(
                user=world.user(i),
                name=f"key {(n := world.next())}",
                prefix=f"{n:012x}",
                key_hash=f"{n:064x}",
                revoked_at=timezone.now() if i % 3 == 0 else None,
            )
            for i in range(count)
        ]
    )


def _webhook_events(world: World, count: int) -> list[WebhookEvent]:
    """Events as the outbox writes them, each with a delivery to one of two endpoints."""
    endpoints = [
        WebhookEndpoint.objects.get_or_create(
            url=f"https://host{i}.example/hooks", secret="s" * 20
        )[0]
        for i in range(2)
    ]
    events = WebhookEvent.objects.bulk_create(
        [
            WebhookEvent(
                event_type="payment.credited",
                dedupe_key=f"payment:{(n := world.next())}:credited",
                payload={"id": str(n), "type": "payment.credited", "data": {}},
            )
            for _ in range(count)
        ]
    )
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                event=event,
                endpoint=endpoints[i % 2],
                status="delivered" if i % 2 else "pending",
                attempts=i % 3,
                last_status_code=200 if i % 2 else 500,
            )
            for i, event in enumerate(events)
        ]
    )
    return events


def build_webhook_events(world: World, count: int) -> None:
    _webhook_events(world, count)


def build_webhook_deliveries(world: World, count: int) -> None:
    _webhook_events(world, count)


def build_webhook_endpoints(world: World, count: int) -> None:
    endpoints = WebhookEndpoint.objects.bulk_create(
        [
            WebhookEndpoint(url=f"https://shop{world.next()}.example/hooks", secret="s" * 20)
            for _ in range(count)
        ]
    )
    # Deliveries on some, so a count per row would show as a query per row.
    event = WebhookEvent.objects.create(
        event_type="withdrawal.completed", dedupe_key=f"withdrawal:{world.next()}:completed"
    )
    WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(event=event, endpoint=e) for e in endpoints[::2]]
    )


BUILDERS: dict[type[Model], Callable[[World, int], None]] = {
    ApiKey: build_api_keys,
    Payment: build_payments,
    WithdrawalRequest: build_withdrawals,
    Transaction: build_transactions,
    UserBalance: build_balances,
    Currency: build_currencies,
    ProviderEvent: build_events,
    PeriodicRun: build_runs,
    LedgerDrift: build_drifts,
    ManualAdjustment: build_manual,
    Notification: build_notifications,
    WebhookEndpoint: build_webhook_endpoints,
    WebhookEvent: build_webhook_events,
    WebhookDelivery: build_webhook_deliveries,
}

PAYMENTS_ADMINS = sorted(
    (model for model in admin.site._registry if model._meta.app_label == "payments"),
    key=lambda model: model._meta.model_name,
)
COUNTS: dict[str, tuple[int, int]] = {}  # changelist -> (queries at 5 rows, at 500 rows)


@pytest.fixture
def superuser(client: Any) -> Any:
    user = User.objects.create(username="root", is_staff=True, is_superuser=True, password="!")
    client.force_login(user)
    return user


def _queries(client: Any, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return [q["sql"] for q in captured.captured_queries]


@pytest.mark.parametrize("model", PAYMENTS_ADMINS, ids=lambda m: m._meta.model_name)
def test_a_changelist_runs_as_many_queries_at_500_rows_as_at_5(
    client: Any, superuser: Any, model: type[Model]
) -> None:
    build = BUILDERS.get(model)
    assert build is not None, f"add a row builder for {model.__name__} to BUILDERS"
    url = f"/admin/payments/{model._meta.model_name}/"
    world = World()
    build(world, 5)
    assert model._default_manager.count() == 5
    _queries(client, url)  # warm-up: per-process caches (content types, ...) fill once
    at_5 = _queries(client, url)
    build(world, 495)
    assert model._default_manager.count() == 500
    at_500 = _queries(client, url)
    COUNTS[model._meta.model_name] = (len(at_5), len(at_500))
    repeated = Counter(at_500).most_common(1)[0]
    assert len(at_500) == len(at_5), (
        f"{url}: {len(at_5)} queries at 5 rows, {len(at_500)} at 500; the most repeated, "
        f"{repeated[1]} times: {repeated[0]}"
    )


def test_zz_report_the_query_counts() -> None:
    """Print what each changelist ran (shown with ``-s``; runs after the cases above)."""
    if not COUNTS:
        pytest.skip("run together with the changelist cases above")
    for name, (at_5, at_500) in sorted(COUNTS.items()):
        print(f"changelist {name}: {at_5} queries at 5 rows, {at_500} at 500")  # noqa: T201
    assert sorted(COUNTS) == sorted(m._meta.model_name for m in PAYMENTS_ADMINS)
