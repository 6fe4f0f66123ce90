"""A request whose database connection is gone answers 503 ``database_unavailable``, not 500.

Real connections, really ended: the test's own PostgreSQL backend is terminated from a second
connection (``pg_terminate_backend``, what a restart or a failover does to it), then the request
is made. Nothing is written, and the next request reconnects and succeeds.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test import Client

from payments.models import ProviderEvent, Transaction
from payments.services import deposits as service
from payments.services.providers.nowpayments.signature import js_dumps, sign_ipn
from tests.conftest import IPN_SECRET
from tests.factories import UserFactory
from tests.payments.test_webhooks import URL, ipn_body

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _reconnect_after() -> Any:
    yield
    connection.close()  # whatever the test left, the flush after it gets a live connection


def end_own_connection() -> None:
    """Terminate this process's backend from another session, as a restart would."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        dbname=settings["NAME"],
        autocommit=True,
    ) as other:
        ended = other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()
    assert ended == (True,)


def test_an_ipn_on_a_dead_connection_is_503_and_stored_on_the_retry(sandbox: Any, usdt: Any):
    payment = service.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal("25.00"), currency_code="USDTTRC20"
    )
    body = ipn_body(sandbox, payment, "finished")
    raw = js_dumps(body).encode()
    headers = {"HTTP_X_NOWPAYMENTS_SIG": sign_ipn(body, IPN_SECRET)}
    client = Client()
    end_own_connection()
    answer = client.post(URL, raw, content_type="application/json", **headers)
    assert answer.status_code == 503, answer.content
    assert answer.json()["code"] == "database_unavailable"
    assert answer["Retry-After"] == "5"
    connection.close()  # a worker or web process does this at the end of the request
    assert ProviderEvent.objects.count() == 0
    # NowPayments delivers it again: stored this time.
    retry = client.post(URL, raw, content_type="application/json", **headers)
    assert retry.status_code == 200, retry.content
    assert ProviderEvent.objects.count() == 1


def test_the_api_and_the_admin_answer_503_and_recover(admin_user: Any) -> None:
    from payments.services.api_keys import api_key_create

    key = api_key_create(user_id=admin_user.pk, name="tests")[1]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    browser = Client()
    browser.force_login(admin_user)
    end_own_connection()
    answer = api.get("/payments/api/balance/")
    assert (answer.status_code, answer.json()["code"]) == (503, "database_unavailable")
    connection.close()
    end_own_connection()
    page = browser.get("/admin/payments/transaction/", HTTP_ACCEPT="text/html")
    assert page.status_code == 503
    assert page["Content-Type"].startswith("text/plain")
    assert "database is unavailable" in page.content.decode()
    connection.close()
    assert api.get("/payments/api/balance/").status_code == 200
    assert browser.get("/admin/payments/transaction/").status_code == 200
    assert Transaction.objects.count() == 0


def test_other_database_errors_are_left_to_django() -> None:
    """An IntegrityError or a bad query is a bug, not an outage: it is not dressed up as 503."""
    from django.db import DatabaseError, IntegrityError, ProgrammingError
    from django.http import HttpResponse
    from django.test import RequestFactory

    from payments.middleware import DatabaseUnavailableMiddleware

    middleware = DatabaseUnavailableMiddleware(lambda request: HttpResponse())
    request = RequestFactory().get("/payments/api/balance/")
    for error in (IntegrityError("duplicate"), ProgrammingError("bad"), DatabaseError("x")):
        assert middleware.process_exception(request, error) is None
