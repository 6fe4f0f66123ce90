"""The NowPayments IPN webhook: verify first, commit the raw event, apply once, in any order.

In both modes: applied in the request (inline), or stored and drained by a worker (default)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests
from django.test import Client

from payments.models import Payment, ProviderEvent, Transaction, UserBalance
from payments.services import deposits as service
from payments.services import events, events_drain
from payments.services.providers.nowpayments.signature import js_dumps, sign_ipn
from tests.conftest import IPN_SECRET
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/payments/webhooks/nowpayments/"


@pytest.fixture(autouse=True)
def _inline(settings):
    """Most tests here apply each IPN in the request (PAYMENTS_IPN_APPLY=inline), to see every
    outcome in the answer; the worker mode's tests switch back to the default."""
    settings.PAYMENTS_IPN_APPLY = "inline"


@pytest.fixture
def payment(sandbox, usdt):
    return service.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )


def ipn_body(sandbox, payment, status: str, **changes) -> dict:
    """An IPN body as NowPayments builds it: the status body, with a nested fee object."""
    remote = sandbox.control.payment(payment.provider_payment_id)
    body = {k: v for k, v in remote.items() if not k.startswith("_")}
    body.update(
        {
            "payment_id": int(payment.provider_payment_id),
            "payment_status": status,
            "fee": {
                "currency": "usdttrc20",
                "depositFee": Decimal("0.00001"),
                "withdrawalFee": Decimal("0"),
                "serviceFee": Decimal("0.000005"),
            },
            "order_description": "Dépôt ☕",
        }
    )
    if status in ("confirming", "confirmed", "sending", "finished"):
        # NowPayments reports what arrived: here, the whole amount asked.
        body["actually_paid"] = body["pay_amount"]
    body.update(changes)
    return body


def post(client, body: dict, signature: str | None = "sign", raw: bytes | None = None):
    """POST ``body`` signed as NowPayments signs it (or ``raw``, a variant of it, so signed)."""
    if raw is None:
        raw = js_dumps(body).encode()
    headers = {}
    if signature == "sign":
        headers["HTTP_X_NOWPAYMENTS_SIG"] = sign_ipn(body, IPN_SECRET)
    elif signature is not None:
        headers["HTTP_X_NOWPAYMENTS_SIG"] = signature
    return client.post(URL, data=raw, content_type="application/json", **headers)


def deposits(payment) -> int:
    return Transaction.objects.filter(payment=payment, transaction_type="deposit").count()


def spaced(obj, depth: int = 0) -> str:
    """``obj`` as JSON with generous whitespace (newlines, indents, spaces around colons)."""
    pad, inner = "\n" + "  " * depth, "\n" + "  " * (depth + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{js_dumps(k)} :  {spaced(v, depth + 1)}" for k, v in obj.items()]
        return "{" + " ,".join(items) + pad + "}"
    if isinstance(obj, list):
        return "[ " + " , ".join(spaced(v, depth + 1) for v in obj) + " ]"
    return js_dumps(obj)


def variants(body: dict) -> list[bytes]:
    """Five byte-different bodies of one IPN; NowPayments' signature of ``body`` fits each."""
    compact = js_dumps(body)
    fee_text = js_dumps({"depositFee": body["fee"]["depositFee"]})[1:-1]
    assert fee_text in compact
    return [
        compact.encode(),
        js_dumps(body, sort_keys=True).encode(),
        js_dumps(dict(reversed(body.items()))).encode(),
        (" \r\n" + spaced(body) + "\n\t").encode(),
        compact.replace(fee_text, '"depositFee":1.0E-5').encode(),  # the same number, written so
    ]


def fail_apply_once(monkeypatch, error: Exception | None = None) -> list[int]:
    """Make the next apply of an IPN raise an unexpected error; return the list of calls."""
    real = events.payment_apply_report
    calls: list[int] = []

    def apply(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error or RuntimeError("database fell over")
        return real(**kwargs)

    monkeypatch.setattr(events, "payment_apply_report", apply)
    return calls


def test_a_valid_ipn_completes_and_credits(client, sandbox, payment):
    sandbox.control.complete(payment.provider_payment_id)
    response = post(client, ipn_body(sandbox, payment, "finished"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "outcome": "applied"}
    payment.refresh_from_db()
    assert payment.status == "completed"
    assert deposits(payment) == 1
    event = ProviderEvent.objects.get()
    assert (event.outcome, event.payment_id, event.provider_status) == (
        "applied",
        payment.pk,
        "finished",
    )
    assert "Dépôt ☕" in event.body


@pytest.mark.parametrize(
    ("signature", "code"),
    [(None, "missing_signature"), ("0" * 128, "invalid_signature"), ("zz", "invalid_signature")],
)
def test_missing_or_bad_signature_changes_nothing(client, sandbox, payment, signature, code):
    response = post(client, ipn_body(sandbox, payment, "finished"), signature=signature)
    assert response.status_code == 401
    assert response.json()["code"] == code
    payment.refresh_from_db()
    assert payment.status == "pending"
    assert not ProviderEvent.objects.exists()
    assert deposits(payment) == 0


def test_a_tampered_body_is_refused(client, sandbox, payment):
    body = ipn_body(sandbox, payment, "confirming")
    signature = sign_ipn(body, IPN_SECRET)
    body["payment_status"] = "finished"
    response = post(client, body, signature=signature)
    assert response.status_code == 401
    assert not ProviderEvent.objects.exists()


def test_no_secret_configured_refuses_every_ipn(client, sandbox, payment, settings):
    settings.NOWPAYMENTS_IPN_SECRET = ""
    response = post(client, ipn_body(sandbox, payment, "finished"))
    assert response.status_code == 503
    assert not ProviderEvent.objects.exists()


def test_a_replayed_ipn_is_stored_once_and_credits_once(client, sandbox, payment):
    body = ipn_body(sandbox, payment, "finished")
    assert post(client, body).json()["outcome"] == "applied"
    replay = post(client, body)
    assert replay.status_code == 200
    assert replay.json()["status"] == "duplicate"
    assert ProviderEvent.objects.get().deliveries == 2
    assert deposits(payment) == 1
    assert UserBalance.objects.get(user=payment.user).balance_usd == Decimal("25.00")


def test_out_of_order_ipns_only_move_forward(client, sandbox, payment):
    assert post(client, ipn_body(sandbox, payment, "finished")).json()["outcome"] == "applied"
    late = post(client, ipn_body(sandbox, payment, "confirming"))
    assert late.json()["outcome"] == "stale"
    earlier = post(client, ipn_body(sandbox, payment, "waiting"))
    assert earlier.json()["outcome"] == "stale"
    payment.refresh_from_db()
    assert payment.status == "completed"
    assert deposits(payment) == 1


def test_an_ipn_for_an_unknown_payment_is_acknowledged_and_recorded(client, sandbox, payment):
    body = ipn_body(sandbox, payment, "finished", payment_id=9999999999)
    response = post(client, body)
    assert response.status_code == 200
    assert response.json()["outcome"] == "unknown_payment"
    assert ProviderEvent.objects.get().outcome == "unknown_payment"
    assert deposits(payment) == 0


def test_an_unknown_status_is_recorded_as_an_error(client, sandbox, payment):
    response = post(client, ipn_body(sandbox, payment, "teleported"))
    assert response.status_code == 200
    assert response.json()["code"] == "unknown_provider_status"
    assert ProviderEvent.objects.get().outcome == "error"
    payment.refresh_from_db()
    assert payment.status == "pending"


def test_only_post_is_allowed(client):
    assert client.get(URL).status_code == 405


def test_the_sandbox_delivers_signed_ipns_that_settle_the_payment(
    live_server, sandbox, usdt, settings
):
    """End to end over real HTTP both ways: sandbox -> webhook -> ledger."""
    settings.PAYMENTS_PUBLIC_BASE_URL = live_server.url
    user = UserFactory()
    payment = service.payment_create(
        user_id=user.pk, amount_usd=Decimal("40.00"), currency_code="USDTTRC20"
    )
    sandbox.control.complete(payment.provider_payment_id)

    def settled() -> bool:
        return Transaction.objects.filter(payment_id=payment.pk).exists()

    sandbox.control.wait_for(settled, timeout=10)

    def all_delivered() -> list:
        log = sandbox.control.ipn_log(object_id=payment.provider_payment_id)
        return log if log and all(entry["delivered"] for entry in log) else []

    log = sandbox.control.wait_for(all_delivered, timeout=10)
    assert [entry["status"] for entry in log] == ["confirming", "confirmed", "sending", "finished"]
    payment.refresh_from_db()
    assert payment.status == Payment.PaymentStatus.COMPLETED
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("40.00")
    # Delivered statuses all landed as events; the deposit was made once.
    assert ProviderEvent.objects.filter(payment=payment).count() >= 1
    assert deposits(payment) == 1
    assert requests.get(live_server.url + URL, timeout=5).status_code == 405


def test_the_same_ipn_delivered_concurrently_is_applied_once(sandbox, payment):
    from django.test import Client

    from tests.payments.test_ledger_concurrency import run_threads

    sandbox.control.complete(payment.provider_payment_id)
    body = ipn_body(sandbox, payment, "finished")
    answers: list[str] = []

    def deliver(index: int) -> None:
        answers.append(post(Client(), body).json()["status"])

    assert run_threads(deliver, count=8) == []
    assert sorted(answers) == ["duplicate"] * 7 + ["ok"]
    event = ProviderEvent.objects.get()
    assert event.deliveries == 8
    assert deposits(payment) == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"payment_id=1&payment_status=finished", "not valid JSON"),
        (b'{"payment_id": 1, "payment_status": "finished"', "not valid JSON"),
        (b'{"payment_id": NaN}', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'"finished"', "not a JSON object"),
        (b"", "not valid JSON"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400_with_a_code(client, sandbox, raw, message):
    response = post(client, {}, signature="a" * 128, raw=raw)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_body"
    assert message in response.json()["message"]
    assert not ProviderEvent.objects.exists()


def test_an_unexpected_error_answers_500_keeps_the_event_and_the_retry_applies_it_once(
    sandbox, payment, monkeypatch
):
    calls = fail_apply_once(monkeypatch)
    sandbox.control.complete(payment.provider_payment_id)
    body = ipn_body(sandbox, payment, "finished")
    nowpayments = Client(raise_request_exception=False)

    response = post(nowpayments, body)
    assert response.status_code == 500  # NowPayments delivers it again later
    event = ProviderEvent.objects.get()
    assert event.outcome == "error"
    assert event.detail == "unexpected RuntimeError: database fell over"
    assert event.processed_at is not None
    assert event.body == js_dumps(body)
    payment.refresh_from_db()
    assert (payment.status, deposits(payment)) == ("pending", 0)

    retry = post(nowpayments, body)
    assert retry.status_code == 200
    assert retry.json() == {"status": "ok", "outcome": "applied"}
    again = post(nowpayments, body)
    assert again.json() == {"status": "duplicate"}
    event.refresh_from_db()
    assert (event.outcome, event.detail, event.deliveries) == ("applied", "", 3)
    assert event.payment_id == payment.pk
    payment.refresh_from_db()
    assert (payment.status, deposits(payment)) == ("completed", 1)
    assert UserBalance.objects.get(user=payment.user).balance_usd == Decimal("25.00")
    assert len(calls) == 2


def test_five_variants_of_one_signed_ipn_are_one_event_applied_once(client, sandbox, payment):
    sandbox.control.complete(payment.provider_payment_id)
    body = ipn_body(sandbox, payment, "finished")
    raws = variants(body)
    assert len(set(raws)) == 5
    answers = [post(client, body, raw=raw) for raw in raws]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["status"] for a in answers] == ["ok"] + ["duplicate"] * 4
    event = ProviderEvent.objects.get()
    assert (event.deliveries, event.outcome) == (5, "applied")
    assert event.body == raws[0].decode()  # the first delivery, exactly as received
    assert deposits(payment) == 1
    assert UserBalance.objects.get(user=payment.user).balance_usd == Decimal("25.00")


def test_a_redelivered_error_is_applied_again_and_answers_its_error(client, sandbox, payment):
    body = ipn_body(sandbox, payment, "teleported")
    assert post(client, body).json() == {"status": "error", "code": "unknown_provider_status"}
    assert post(client, body).json() == {"status": "error", "code": "unknown_provider_status"}
    event = ProviderEvent.objects.get()
    assert (event.outcome, event.deliveries) == ("error", 2)
    assert event.detail.startswith("unknown_provider_status: ")


def test_a_payout_ipn_is_stored_and_ignored(client, sandbox):
    body = {"id": 5000012345, "status": "FINISHED", "hash": "0xabc", "amount": Decimal("9.5")}
    response = post(client, body)
    assert response.json() == {"status": "ok", "outcome": "ignored"}
    event = ProviderEvent.objects.get()
    assert (event.kind, event.provider_object_id, event.provider_status) == (
        "payout",
        "5000012345",
        "FINISHED",
    )
    assert post(client, body).json() == {"status": "duplicate"}


# --- the default mode: the webhook stores, a worker drains ----------------------------------


def test_by_default_the_webhook_only_stores_and_a_drain_applies_it(
    client, sandbox, payment, settings
):
    settings.PAYMENTS_IPN_APPLY = "worker"
    sandbox.control.complete(payment.provider_payment_id)
    body = ipn_body(sandbox, payment, "finished")
    response = post(client, body)
    assert (response.status_code, response.json()) == (200, {"status": "received"})
    event = ProviderEvent.objects.get()
    assert (event.outcome, event.processed_at) == ("received", None)
    payment.refresh_from_db()
    assert (payment.status, deposits(payment)) == ("pending", 0)
    # Not applied yet: a redelivery is one more delivery of the same stored event.
    assert post(client, body).json() == {"status": "duplicate"}

    drained = events_drain.events_drain()
    assert drained.counts == {"applied": 1}
    event.refresh_from_db()
    assert (event.outcome, event.payment_id, event.deliveries) == ("applied", payment.pk, 2)
    payment.refresh_from_db()
    assert (payment.status, deposits(payment)) == ("completed", 1)
    assert UserBalance.objects.get(user=payment.user).balance_usd == Decimal("25.00")
    # Applied: later deliveries are duplicates, and a drain finds nothing.
    assert post(client, body).json() == {"status": "duplicate"}
    assert events_drain.events_drain().counts == {}
    assert deposits(payment) == 1


def test_a_bad_signature_stores_nothing_in_worker_mode_either(client, sandbox, payment, settings):
    settings.PAYMENTS_IPN_APPLY = "worker"
    response = post(client, ipn_body(sandbox, payment, "finished"), signature="0" * 128)
    assert response.status_code == 401
    assert not ProviderEvent.objects.exists()
    assert events_drain.events_drain().counts == {}
