"""Who sees what: every user page and the status endpoint, for anonymous, the owner, another
user and a staff superuser who does not own the object (the pages are the user's own, not an
operator's: staff see others' payments in the admin, not here)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from django.urls import reverse

from payments.models import WithdrawalRequest
from tests.factories import PaymentFactory
from tests.payments.pages.conftest import TRON_ADDRESS, client_for, fund, make_withdrawal

pytestmark = pytest.mark.django_db

# (method, URL name, the object its URL names: None, "payment" or "withdrawal")
PAGES = [
    ("GET", "account", None),
    ("GET", "create_deposit", None),
    ("GET", "create_withdrawal", None),
    ("GET", "payment_detail", "payment"),
    ("GET", "payment_status", "payment"),
    ("GET", "withdrawal_detail", "withdrawal"),
    ("POST", "withdrawal_cancel", "withdrawal"),
]
ROLES = ["anonymous", "owner", "other", "staff"]


@pytest.fixture
def objects(owner: Any, trx: Any) -> dict[str, Any]:
    fund(owner, "50.00")
    payment = PaymentFactory(
        user=owner,
        currency=trx,
        amount_usd=Decimal("25.00"),
        pay_address=TRON_ADDRESS,
        pay_amount=Decimal("25.125"),
    )
    return {"payment": payment, "withdrawal": make_withdrawal(owner, trx)}


def _url(name: str, target: Any) -> str:
    if target is None:
        return reverse(name)
    key = "payment_id" if name.startswith("payment") else "withdrawal_id"
    return reverse(name, kwargs={key: target.pk})


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "name", "kind"), PAGES)
def test_permission_matrix(
    role: str, method: str, name: str, kind: str | None, objects: dict[str, Any], request: Any
) -> None:
    user = None if role == "anonymous" else request.getfixturevalue(role)
    client = client_for(user)
    url = _url(name, objects[kind] if kind else None)
    response = client.generic(method, url)

    if role == "anonymous":
        assert response.status_code == 302
        assert response["Location"] == f"/login/?next={quote(url)}"
    elif kind is None or role == "owner":
        expected = 302 if method == "POST" else 200
        assert response.status_code == expected, response.content[:500]
    else:
        assert response.status_code == 404
    withdrawal = WithdrawalRequest.objects.get(pk=objects["withdrawal"].pk)
    cancelled = name == "withdrawal_cancel" and role == "owner"
    assert withdrawal.status == ("cancelled" if cancelled else "pending")


def test_the_status_endpoint_shows_nothing_of_anothers_payment(
    objects: dict[str, Any], other: Any
) -> None:
    response = client_for(other).get(_url("payment_status", objects["payment"]))
    assert response.status_code == 404
    assert TRON_ADDRESS not in response.content.decode()


@pytest.mark.parametrize("name", ["payment_detail", "payment_status", "withdrawal_detail"])
def test_an_unknown_id_is_a_404(owner_client: Any, name: str) -> None:
    key = "payment_id" if name.startswith("payment") else "withdrawal_id"
    url = reverse(name, kwargs={key: "00000000-0000-0000-0000-000000000000"})
    assert owner_client.get(url).status_code == 404
    assert owner_client.get(url.replace("00000000-", "not-a-uuid-")).status_code == 404


@pytest.mark.parametrize(
    ("method", "name", "kind"),
    [
        ("POST", "payment_detail", "payment"),
        ("POST", "payment_status", "payment"),
        ("GET", "withdrawal_cancel", "withdrawal"),
        ("PUT", "account", None),
        ("DELETE", "withdrawal_detail", "withdrawal"),
        ("GET", "logout", None),
    ],
)
def test_other_methods_are_refused_with_405(
    owner_client: Any, objects: dict[str, Any], method: str, name: str, kind: str | None
) -> None:
    url = _url(name, objects[kind] if kind else None)
    assert owner_client.generic(method, url).status_code == 405
    assert WithdrawalRequest.objects.get(pk=objects["withdrawal"].pk).status == "pending"
