"""The IPN drain: stored events applied in batches, each exactly once, with inline's outcomes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from payments.errors import PaymentsError
from payments.models import ProviderEvent, Transaction, UserBalance
from payments.services import deposits as service
from payments.services import events, events_drain
from payments.services.providers.nowpayments.signature import js_dumps
from tests.factories import UserFactory
from tests.payments.test_ledger_concurrency import assert_ledger_consistent, run_threads
from tests.payments.test_webhooks import ipn_body

pytestmark = pytest.mark.django_db(transaction=True)


def new_payment(amount: str = "25.00"):
    return service.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal(amount), currency_code="USDTTRC20"
    )


def store(body: dict) -> int:
    kind = events.KIND_PAYMENT if "payment_id" in body else events.KIND_PAYOUT
    status = str(body.get("payment_status") or body.get("status"))
    event_id, created = events.event_store(
        kind=kind,
        object_id=str(body.get("payment_id") or body.get("id")),
        status=status,
        body=js_dumps(body).encode(),
        signature="s",
    )
    assert created
    return event_id


def deposits(payment) -> int:
    return Transaction.objects.filter(payment=payment, transaction_type="deposit").count()


def outcome(event_id: int) -> str:
    return ProviderEvent.objects.get(pk=event_id).outcome


def test_one_batch_gives_each_event_the_outcome_inline_would(sandbox, usdt):
    first, second, third = new_payment(), new_payment("40.00"), new_payment()
    for payment in (first, second):
        sandbox.control.complete(payment.provider_payment_id)
    ids = {
        "first confirming": store(ipn_body(sandbox, first, "confirming", payin_hash=None)),
        "second finished": store(ipn_body(sandbox, second, "finished")),
        "first finished": store(ipn_body(sandbox, first, "finished", payin_hash=None)),
        "payout": store({"id": 5000012345, "status": "FINISHED", "amount": Decimal("9.5")}),
        "unknown payment": store(ipn_body(sandbox, first, "finished", payment_id=9999999999)),
        "first waiting, late": store(ipn_body(sandbox, first, "waiting", payin_hash=None)),
        "unknown status": store(ipn_body(sandbox, third, "teleported")),
    }
    result = events_drain.events_drain()

    assert {name: outcome(pk) for name, pk in ids.items()} == {
        "first confirming": "applied",
        "second finished": "applied",
        "first finished": "applied",
        "payout": "ignored",
        "unknown payment": "unknown_payment",
        "first waiting, late": "stale",
        "unknown status": "error",
    }
    assert result.counts == {
        "applied": 3,
        "stale": 1,
        "ignored": 1,
        "unknown_payment": 1,
        "error": 1,
    }
    assert ProviderEvent.objects.get(pk=ids["payout"]).detail == events.PAYOUT_DETAIL
    assert ProviderEvent.objects.get(pk=ids["unknown status"]).detail.startswith(
        "unknown_provider_status: "
    )
    assert ProviderEvent.objects.get(pk=ids["first finished"]).payment_id == first.pk
    assert not ProviderEvent.objects.filter(processed_at__isnull=True).exists()
    for payment, amount in ((first, "25.00"), (second, "40.00")):
        payment.refresh_from_db()
        assert (payment.status, deposits(payment)) == ("completed", 1)
        assert UserBalance.objects.get(user=payment.user).balance_usd == Decimal(amount)
    third.refresh_from_db()
    assert (third.status, deposits(third)) == ("pending", 0)
    # Money seen, no transaction hash yet (NowPayments' IPN carries none; these bodies leave it
    # out for the first payment): a worker looks it up.
    assert result.missing_hash == [first.pk]
    assert events_drain.events_drain().counts == {}


def test_concurrent_drains_take_disjoint_batches_and_settle_each_payment_once(sandbox, usdt):
    payments = [new_payment(f"{10 + i}.00") for i in range(8)]
    for payment in payments:
        sandbox.control.complete(payment.provider_payment_id)
    for status in ("confirming", "finished"):
        for payment in payments:
            store(ipn_body(sandbox, payment, status))
    counts: list[dict] = []

    def drain(index: int) -> None:
        counts.append(dict(events_drain.events_drain(batch=5).counts))

    assert run_threads(drain, count=3) == []
    assert sum(sum(c.values()) for c in counts) == 16  # every event applied by exactly one
    assert not ProviderEvent.objects.filter(outcome="received").exists()
    for payment in payments:
        payment.refresh_from_db()
        assert (payment.status, deposits(payment)) == ("completed", 1)
        assert_ledger_consistent(payment.user_id)


def test_a_batch_refused_as_a_whole_is_applied_one_by_one(sandbox, usdt, monkeypatch):
    payments = [new_payment(), new_payment("30.00")]
    for payment in payments:
        sandbox.control.complete(payment.provider_payment_id)
    ids = [store(ipn_body(sandbox, payment, "finished")) for payment in payments]
    real = events_drain.payments_apply_reports
    calls: list[int] = []

    def refuse_once(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise PaymentsError("the batch is refused")
        return real(**kwargs)

    monkeypatch.setattr(events_drain, "payments_apply_reports", refuse_once)
    result = events_drain.events_drain()
    assert result.counts == {"applied": 2}
    assert [outcome(pk) for pk in ids] == ["applied", "applied"]
    for payment in payments:
        assert deposits(payment) == 1


def test_a_drain_is_requested_once_until_one_starts(settings):
    from django.core.cache import cache

    cache.delete(events_drain.DRAIN_REQUESTED_KEY)
    assert events_drain.drain_wanted() is True
    assert events_drain.drain_wanted() is False  # one is pending: it will see this event too
    events_drain.events_drain()  # a drain starts: later events need a new request
    assert events_drain.drain_wanted() is True
    assert events_drain.drain_wanted() is False
