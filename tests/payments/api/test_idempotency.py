"""Idempotency-Key on the API's POSTs: one effect per key, replays, conflicts, races, expiry."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.db import connection, transaction
from django.urls import path
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from payments import ledger
from payments.api.idempotency import IdempotentMixin
from payments.models import IdempotencyRecord, Payment, Transaction, UserBalance, WithdrawalRequest
from payments.services.idempotency import idempotency_keys_expire
from tests.factories import UserFactory
from workers.tasks import idempotency_expire_task

pytestmark = pytest.mark.django_db(transaction=True)

API = "/payments/api"
DEPOSIT = {"amount_usd": "25.00", "currency": "USDTTRC20"}
WITHDRAWAL = {"amount_usd": "20.00", "currency": "USDTTRC20", "wallet_address": "TAddr1"}


def client_of(user: Any, **kwargs: Any) -> APIClient:
    client = APIClient(**kwargs)
    client.force_authenticate(user)
    return client


def post(client: APIClient, url: str, data: Any = None, *, key: str | None) -> Any:
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(url, data, format="json", headers=headers)


def fund(user: Any, amount: str) -> None:
    ledger.post(
        user_id=user.pk,
        kind="deposit",
        amount_usd=Decimal(amount),
        idempotency_key=f"fund:{uuid.uuid4()}",
    )


def replayed(response: Any) -> bool:
    return response.headers.get("Idempotent-Replayed") == "true"


def debits(user: Any) -> int:
    return Transaction.objects.filter(user=user, transaction_type="withdrawal").count()


@pytest.fixture
def user() -> Any:
    return UserFactory()


@pytest.fixture
def api(user: Any) -> APIClient:
    return client_of(user)


# --- replays -------------------------------------------------------------------------------


def test_a_replayed_deposit_answers_the_same_and_reaches_nowpayments_once(api, sandbox, usdt):
    sandbox.control.reset_requests()
    first = post(api, f"{API}/payments/", DEPOSIT, key="dep-1")
    assert first.status_code == 201, first.json()
    assert not replayed(first)
    # The same JSON with other spacing and key order is the same request.
    raw = '{ "currency" : "USDTTRC20",  "amount_usd": "25.00" }'
    again = api.post(
        f"{API}/payments/",
        raw,
        content_type="application/json",
        headers={"Idempotency-Key": "dep-1"},
    )
    assert (again.status_code, again.json()) == (201, first.json())
    assert replayed(again)
    assert Payment.objects.count() == 1
    assert sandbox.control.requests()["POST /v1/payment"] == 1


def test_a_replayed_withdrawal_creates_one_request_and_one_debit(api, user, usdt):
    fund(user, "50.00")
    first = post(api, f"{API}/withdrawals/", WITHDRAWAL, key="wd-1")
    second = post(api, f"{API}/withdrawals/", WITHDRAWAL, key="wd-1")
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert replayed(second)
    assert WithdrawalRequest.objects.count() == 1
    assert debits(user) == 1
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("30.00")


def test_a_replayed_cancel_is_the_first_answer_not_a_conflict(api, user, usdt):
    fund(user, "50.00")
    created = post(api, f"{API}/withdrawals/", WITHDRAWAL, key=None).json()
    cancel = f"{API}/withdrawals/{created['id']}/cancel/"
    first = post(api, cancel, key="cancel-1")
    second = post(api, cancel, key="cancel-1")
    assert (first.status_code, first.json()["status"]) == (200, "cancelled")
    assert (second.status_code, second.json()) == (200, first.json())
    assert replayed(second)
    assert Transaction.objects.filter(user=user, transaction_type="refund").count() == 1
    # Without a key the second cancel runs, and is refused.
    assert post(api, cancel, key=None).json()["code"] == "invalid_transition"


def test_the_same_key_with_another_request_is_a_409_and_runs_nothing(api, user, usdt):
    fund(user, "50.00")
    assert post(api, f"{API}/withdrawals/", WITHDRAWAL, key="k").status_code == 201
    other_body = post(api, f"{API}/withdrawals/", {**WITHDRAWAL, "amount_usd": "21.00"}, key="k")
    assert (other_body.status_code, other_body.json()["code"]) == (409, "idempotency_key_reused")
    assert other_body.json()["message"]
    withdrawal = WithdrawalRequest.objects.get()
    other_path = post(api, f"{API}/withdrawals/{withdrawal.pk}/cancel/", key="k")
    assert (other_path.status_code, other_path.json()["code"]) == (409, "idempotency_key_reused")
    withdrawal.refresh_from_db()
    assert withdrawal.status == "pending"
    assert debits(user) == 1


def test_a_4xx_is_kept_and_replayed_as_it_was(api, user, usdt):
    fund(user, "5.00")
    refused = post(api, f"{API}/withdrawals/", WITHDRAWAL, key="poor")
    assert (refused.status_code, refused.json()["code"]) == (409, "insufficient_funds")
    fund(user, "50.00")
    # The same request gets the same answer, even though it would now succeed...
    again = post(api, f"{API}/withdrawals/", WITHDRAWAL, key="poor")
    assert (again.status_code, again.json()) == (409, refused.json())
    assert replayed(again)
    assert not WithdrawalRequest.objects.exists()
    # ... and a new key runs it.
    assert post(api, f"{API}/withdrawals/", WITHDRAWAL, key="rich").status_code == 201


def test_a_body_that_does_not_parse_is_a_400_and_does_not_use_the_key(api, user, usdt):
    fund(user, "50.00")
    broken = api.post(
        f"{API}/withdrawals/",
        '{"amount_usd": ',
        content_type="application/json",
        headers={"Idempotency-Key": "parse"},
    )
    assert broken.status_code == 400
    assert broken.json()["code"] == "parse_error"
    assert not IdempotencyRecord.objects.exists()
    assert post(api, f"{API}/withdrawals/", WITHDRAWAL, key="parse").status_code == 201


def test_keys_belong_to_their_user(user, usdt):
    other = UserFactory()
    for who in (user, other):
        fund(who, "50.00")
    mine = post(client_of(user), f"{API}/withdrawals/", WITHDRAWAL, key="shared")
    theirs = post(client_of(other), f"{API}/withdrawals/", WITHDRAWAL, key="shared")
    assert mine.status_code == theirs.status_code == 201
    assert not replayed(theirs)
    assert mine.json()["id"] != theirs.json()["id"]
    assert (debits(user), debits(other)) == (1, 1)


def test_a_key_is_the_users_whether_they_sign_in_or_present_an_api_key(api, key_client, user, usdt):
    fund(user, "50.00")
    by_session = post(api, f"{API}/withdrawals/", WITHDRAWAL, key="either")
    by_key = post(key_client, f"{API}/withdrawals/", WITHDRAWAL, key="either")
    assert by_session.status_code == by_key.status_code == 201
    assert replayed(by_key)
    assert by_key.json() == by_session.json()
    assert debits(user) == 1


def test_a_throttled_request_keeps_nothing_and_a_replay_is_throttled_too(api, user, usdt, settings):
    """The throttle runs first: a 429 says nothing about the request, so its key stays free."""
    settings.PAYMENTS_THROTTLE_RATES = {
        **settings.PAYMENTS_THROTTLE_RATES,
        "withdrawal_create": "1/min",
    }
    fund(user, "50.00")
    assert post(api, f"{API}/withdrawals/", WITHDRAWAL, key="a").status_code == 201
    throttled = post(api, f"{API}/withdrawals/", WITHDRAWAL, key="b")
    assert throttled.status_code == 429
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["a"]
    assert post(api, f"{API}/withdrawals/", WITHDRAWAL, key="a").status_code == 429
    caches["default"].clear()
    later = post(api, f"{API}/withdrawals/", WITHDRAWAL, key="b")
    assert later.status_code == 201
    assert not replayed(later)
    assert debits(user) == 2


@pytest.mark.parametrize("key", ["", "k" * 256, "clé", "tab\tbed", "bell\x07", "two words"])
def test_an_invalid_key_is_a_400_and_runs_nothing(api, user, usdt, key):
    fund(user, "50.00")
    response = post(api, f"{API}/withdrawals/", WITHDRAWAL, key=key)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_idempotency_key")
    assert response.json()["message"]
    assert not WithdrawalRequest.objects.exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("key", ["~" * 255, "a", "order-42/retry:1{x}"])
def test_keys_of_printable_ascii_up_to_255_are_accepted(api, user, usdt, key):
    fund(user, "50.00")
    assert post(api, f"{API}/withdrawals/", WITHDRAWAL, key=key).status_code == 201
    assert replayed(post(api, f"{API}/withdrawals/", WITHDRAWAL, key=key))


def test_without_a_key_or_on_a_read_nothing_changes(api, user, usdt):
    fund(user, "50.00")
    post(api, f"{API}/withdrawals/", WITHDRAWAL, key=None)
    post(api, f"{API}/withdrawals/", WITHDRAWAL, key=None)
    assert debits(user) == 2
    listed = api.get(f"{API}/withdrawals/", headers={"Idempotency-Key": "read"})
    assert listed.status_code == 200
    assert not replayed(listed)
    assert not IdempotencyRecord.objects.exists()


def test_an_anonymous_post_is_refused_before_the_key_is_looked_at(usdt):
    response = post(APIClient(), f"{API}/withdrawals/", WITHDRAWAL, key="anon")
    assert response.status_code in (401, 403)
    assert not IdempotencyRecord.objects.exists()


# --- two at once ---------------------------------------------------------------------------


def at_once(count: int, call: Callable[[], Any]) -> list[Any]:
    """Run ``call`` in ``count`` threads released together, each on its own connection."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures, failures
    return results


def split(responses: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """(first answers, replays, 409 in progress); anything else fails the test."""
    first = [r for r in responses if r.status_code == 201 and not replayed(r)]
    replays = [r for r in responses if r.status_code == 201 and replayed(r)]
    waiting = [
        r
        for r in responses
        if r.status_code == 409 and r.json()["code"] == "idempotency_in_progress"
    ]
    assert len(first) + len(replays) + len(waiting) == len(responses), [
        (r.status_code, r.content) for r in responses
    ]
    return first, replays, waiting


def test_two_deposits_at_once_with_one_key_make_one_payment(user, sandbox, usdt):
    sandbox.control.reset_requests()
    # NowPayments answers the create slowly, so the others arrive while it runs.
    sandbox.control.set_fault("timeout", count=1, path="/v1/payment", delay=1.5)
    user_model = get_user_model()

    def call() -> Any:
        me = user_model.objects.get(pk=user.pk)
        return post(client_of(me), f"{API}/payments/", DEPOSIT, key="race")

    first, replays, waiting = split(at_once(5, call))
    assert len(first) == 1
    assert waiting, "no request overlapped the slow one"
    assert all(r.headers["Retry-After"] for r in waiting)
    assert all(r.json() == first[0].json() for r in replays)
    assert Payment.objects.count() == 1
    assert sandbox.control.requests()["POST /v1/payment"] == 1
    later = post(client_of(user), f"{API}/payments/", DEPOSIT, key="race")
    assert (later.status_code, later.json()) == (201, first[0].json())
    assert replayed(later)


def test_withdrawals_at_once_with_one_key_debit_once(user, usdt):
    fund(user, "100.00")
    user_model = get_user_model()

    def call() -> Any:
        me = user_model.objects.get(pk=user.pk)
        return post(client_of(me), f"{API}/withdrawals/", WITHDRAWAL, key="race")

    first, replays, _ = split(at_once(8, call))
    assert len(first) == 1
    assert all(r.json() == first[0].json() for r in replays)
    assert WithdrawalRequest.objects.count() == 1
    assert debits(user) == 1
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("80.00")


# --- failures leave the key retryable, unless they wrote --------------------------------------


def test_a_provider_outage_leaves_the_key_retryable(api, sandbox, usdt):
    sandbox.control.set_fault("http_500", count=1, path="/v1/payment")
    down = post(api, f"{API}/payments/", DEPOSIT, key="outage")
    assert (down.status_code, down.json()["code"]) == (503, "provider_unavailable")
    assert not IdempotencyRecord.objects.exists()
    back = post(api, f"{API}/payments/", DEPOSIT, key="outage")
    assert back.status_code == 201
    assert not replayed(back)
    assert replayed(post(api, f"{API}/payments/", DEPOSIT, key="outage"))
    assert Payment.objects.count() == 1


def test_a_create_nowpayments_made_but_never_answered_is_made_again(api, sandbox, usdt, settings):
    """The documented cost of a retryable timeout: an orphan at the provider, none here."""
    settings.NOWPAYMENTS_TIMEOUT = 0.5
    sandbox.control.reset_requests()
    sandbox.control.set_fault("timeout", count=1, path="/v1/payment", delay=1.0)
    lost = post(api, f"{API}/payments/", DEPOSIT, key="lost")
    assert (lost.status_code, lost.json()["code"]) == (503, "provider_unavailable")
    assert post(api, f"{API}/payments/", DEPOSIT, key="lost").status_code == 201
    assert Payment.objects.count() == 1
    assert sandbox.control.requests()["POST /v1/payment"] == 2


class ProbeView(IdempotentMixin, APIView):
    """A view that writes, fails or crashes on demand, to see what the key does after each."""

    def post(self, request: Request) -> Response:
        action = str(request.data.get("action", ""))
        if action.startswith("write"):
            fund(request.user, "1.00")
        if action == "rolled-back-write-crash":
            with transaction.atomic():
                fund(request.user, "1.00")
                raise RuntimeError("probe crashed inside its transaction")
        if action.endswith("crash"):
            raise RuntimeError("probe crashed")
        if action.endswith("503"):
            return Response({"code": "down", "message": "Down."}, status=503)
        if action.endswith("429"):
            return Response({"code": "throttled", "message": "Later."}, status=429)
        return Response({"credits": Transaction.objects.filter(user=request.user).count()}, 201)


urlpatterns = [path("probe/", ProbeView.as_view())]


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("action", ["crash", "503", "429", "rolled-back-write-crash"])
def test_a_failure_that_wrote_nothing_leaves_the_key_retryable(user, action):
    client = client_of(user, raise_request_exception=False)
    failed = post(client, "/probe/", {"action": action}, key="probe")
    assert failed.status_code >= 429
    assert not IdempotencyRecord.objects.exists()
    assert not Transaction.objects.filter(user=user).exists()
    retried = post(client, "/probe/", {"action": action}, key="probe")
    assert not replayed(retried)


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("action", ["write-crash", "write-503"])
def test_a_failure_after_a_write_is_kept_so_a_retry_cannot_write_twice(user, action):
    client = client_of(user, raise_request_exception=False)
    failed = post(client, "/probe/", {"action": action}, key="probe")
    assert failed.status_code in (500, 503)
    retried = post(client, "/probe/", {"action": action}, key="probe")
    assert (retried.status_code, retried.json()["code"]) == (500, "idempotent_request_failed")
    assert replayed(retried)
    assert Transaction.objects.filter(user=user).count() == 1


@pytest.mark.urls(__name__)
def test_a_write_that_succeeded_is_replayed_not_written_again(user):
    client = client_of(user)
    first = post(client, "/probe/", {"action": "write"}, key="probe")
    again = post(client, "/probe/", {"action": "write"}, key="probe")
    assert (first.status_code, first.json()) == (201, {"credits": 1})
    assert (again.status_code, again.json()) == (201, {"credits": 1})
    assert Transaction.objects.filter(user=user).count() == 1


# --- expiry --------------------------------------------------------------------------------


def age(key: str, hours: float) -> None:
    IdempotencyRecord.objects.filter(key=key).update(
        created_at=timezone.now() - timedelta(hours=hours)
    )


def test_the_beat_task_forgets_records_older_than_the_ttl(api, user, usdt):
    fund(user, "100.00")
    for key in ("old", "older", "recent"):
        assert post(api, f"{API}/withdrawals/", WITHDRAWAL, key=key).status_code == 201
    age("old", 24.5)
    age("older", 24 * 30)
    age("recent", 23)
    assert idempotency_expire_task() == {"deleted": 2}
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["recent"]
    assert idempotency_keys_expire() == 0


def test_the_ttl_is_a_setting(api, user, usdt, settings):
    settings.PAYMENTS_IDEMPOTENCY_TTL_HOURS = 1
    fund(user, "50.00")
    post(api, f"{API}/withdrawals/", WITHDRAWAL, key="short")
    age("short", 0.5)
    assert idempotency_keys_expire() == 0
    assert idempotency_keys_expire(now=timezone.now() + timedelta(hours=1)) == 1


def test_an_expired_key_is_a_new_key_even_before_the_task_runs(api, user, usdt):
    fund(user, "50.00")
    first = post(api, f"{API}/withdrawals/", WITHDRAWAL, key="stale")
    age("stale", 25)
    again = post(api, f"{API}/withdrawals/", WITHDRAWAL, key="stale")
    assert again.status_code == 201
    assert not replayed(again)
    assert again.json()["id"] != first.json()["id"]
    assert IdempotencyRecord.objects.get(key="stale").created_at > timezone.now() - timedelta(
        hours=1
    )
