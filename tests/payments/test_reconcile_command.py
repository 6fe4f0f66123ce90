"""manage.py reconcile: a sentence per open finding, exit 1 when there are any, 0 when clean."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from payments.models import LedgerDrift, Payment
from payments.services import deposits as service
from payments.services.findings import finding_resolve
from tests.factories import UserFactory
from tests.faults.books import reconcile_env
from tests.workers.processes import ROOT, app_database_url

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("reconcile", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def settled_payment(sandbox, amount: str) -> Payment:
    """A payment paid in full at the sandbox, applied and credited."""
    payment = service.payment_create(
        user_id=UserFactory().pk, amount_usd=Decimal(amount), currency_code="USDTTRC20"
    )
    sandbox.control.complete(payment.provider_payment_id)
    service.payments_poll()
    payment.refresh_from_db()
    assert payment.status == "completed"
    return payment


def unsettled_payment(usdt, *, minutes_ago: int) -> Payment:
    """A payment completed (as the seed's ORM does it) that no sweeper credited."""
    completed = timezone.now() - timedelta(minutes=minutes_ago)
    return Payment.objects.bulk_create(
        [
            Payment(
                user=UserFactory(),
                currency=usdt,
                amount_usd=Decimal("12.34"),
                internal_payment_id=f"PAY_CMD_{uuid.uuid4().hex[:12]}",
                status=Payment.PaymentStatus.COMPLETED,
                completed_at=completed,
                status_changed_at=completed,
            )
        ]
    )[0]


def test_clean_books_exit_0_internally_and_against_the_provider(sandbox, usdt):
    settled_payment(sandbox, "25.00")
    code, out = run("--provider")
    assert code == 0, out
    assert "1 payments and 0 withdrawals checked; 0 differ" in out
    assert out.strip().endswith("Clean: no open findings.")
    assert not LedgerDrift.objects.exists()


def test_an_unsettled_payment_is_one_sentence_and_exit_1(usdt):
    payment = unsettled_payment(usdt, minutes_ago=60)
    code, out = run()
    assert code == 1, out
    lines = [line for line in out.splitlines() if f"payment:{payment.pk}" in line]
    assert len(lines) == 1, out
    assert lines[0].startswith("Completed payment without a deposit (unsettled_payment)")
    since = LedgerDrift.objects.get().first_seen_at
    assert lines[0].endswith(f"seen 1 time(s) since {since:%Y-%m-%d %H:%M}."), lines[0]
    assert "1 open finding(s)." in out


def test_within_the_settlement_grace_nothing_is_open(usdt):
    unsettled_payment(usdt, minutes_ago=1)
    code, out = run()
    assert code == 0, out


def test_a_resolved_finding_is_no_longer_open(usdt):
    unsettled_payment(usdt, minutes_ago=60)
    assert run()[0] == 1
    finding = LedgerDrift.objects.get()
    finding_resolve(finding_id=finding.pk, user=UserFactory(is_staff=True), notes="credited")
    # Still unsettled, so the next run finds it again: open once more.
    code, out = run()
    assert code == 1, out
    assert LedgerDrift.objects.filter(resolved_at__isnull=True).count() == 1


def test_the_provider_not_answering_is_exit_2(sandbox, usdt):
    settled_payment(sandbox, "10.00")
    sandbox.control.set_fault("http_500", count=1000)
    code, out = run("--provider")
    assert code == 2, out
    assert "NowPayments could not be asked" in out


def test_the_exit_status_reaches_the_shell(sandbox, usdt):
    """As the fault suite runs it: a subprocess, as the application role."""
    command = [sys.executable, "manage.py", "reconcile", "--provider"]
    env = reconcile_env(app_database_url(), sandbox.api_url, None)
    clean = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    payment = unsettled_payment(usdt, minutes_ago=60)
    dirty = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert dirty.returncode == 1, dirty.stdout + dirty.stderr
    assert f"payment:{payment.pk}" in dirty.stdout
