"""Reversal: a refunded deposit is taken back through the ledger; what the balance cannot cover
is owed (a Receivable, collected from later credits) and blocks withdrawals until settled."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from payments import ledger, ledger_pg
from payments.models import Payment, Receivable, Transaction
from payments.models.ops import DriftKind
from payments.models.payment import PaymentStatus
from payments.models.transaction import TransactionType
from payments.models.webhook import WebhookEventType
from payments.services.findings import finding_record
from payments.services.host_webhooks import webhook_payments_record

logger = logging.getLogger(__name__)

ZERO = Decimal("0.00")


def reverse_locked(payments: Sequence[Payment]) -> list[Transaction]:
    """Reverse the deposit of every refunded payment among ``payments`` (locked), once.

    Takes back what the user's balance holds, up to the credit; the rest becomes a
    Receivable and a finding. Returns the reversal postings made now.
    """
    refunded = [p for p in payments if p.status == PaymentStatus.REFUNDED]
    if not refunded:
        return []
    ids = [p.pk for p in refunded]
    deposits = {
        t.payment_id: t
        for t in Transaction.objects.filter(payment_id__in=ids, transaction_type="deposit")
    }
    done = set(
        Transaction.objects.filter(
            payment_id__in=ids, transaction_type=TransactionType.REVERSAL
        ).values_list("payment_id", flat=True)
    ) | set(Receivable.objects.filter(payment_id__in=ids).values_list("payment_id", flat=True))
    posted: list[Transaction] = []
    for payment in sorted(refunded, key=lambda p: (p.user_id, p.pk)):
        deposit = deposits.get(payment.pk)
        if deposit is None or payment.pk in done:
            continue  # never credited, or already reversed
        posting = _reverse_one(payment, deposit.amount_usd)
        if posting is not None:
            posted.append(posting)
    return posted


def _reverse_one(payment: Payment, credited: Decimal) -> Transaction | None:
    balance = ledger.balance_locked(payment.user_id)
    take = min(balance, credited)
    posting = None
    if take > 0:
        posting = ledger.post(
            user_id=payment.user_id,
            kind=TransactionType.REVERSAL,
            amount_usd=-take,
            idempotency_key=f"payment:{payment.pk}:reversal",
            description=f"Deposit {payment.internal_payment_id} refunded by NowPayments",
            metadata={"provider_payment_id": payment.provider_payment_id or ""},
            payment_id=payment.pk,
        )
    owed = credited - take
    detail = (
        f"NowPayments refunded {payment.internal_payment_id} after we credited {credited} USD; "
        f"{take} USD was taken back from the balance"
    )
    if owed > 0:
        Receivable._base_manager.create(user_id=payment.user_id, payment=payment, amount_usd=owed)
        finding_record(
            kind=DriftKind.RECEIVABLE_OPEN,
            subject=f"payment:{payment.pk}",
            user_id=payment.user_id,
            payment_id=payment.pk,
            expected="0.00 USD owed",
            actual=f"{owed} USD owed",
            detail=detail + f" and {owed} USD is owed; withdrawals are refused until it is paid.",
        )
    finding_record(
        kind=DriftKind.PAYMENT_REVERSED,
        subject=f"payment:{payment.pk}",
        user_id=payment.user_id,
        payment_id=payment.pk,
        expected=f"{credited} USD credited",
        actual=f"{take} USD reversed, {owed} USD owed",
        detail=detail + ".",
    )
    webhook_payments_record(
        event_type=WebhookEventType.PAYMENT_REVERSED,
        extras={
            payment.pk: {
                "credited_usd": str(credited),
                "reversed_usd": str(take),
                "owed_usd": str(owed),
            }
        },
    )
    logger.warning(
        "payment id=%s refunded after credit: reversed %s, owed %s", payment.pk, take, owed
    )
    return posting


_ANY_OPEN_DEBT = (
    "SELECT 1 FROM payments_receivable WHERE user_id = ANY(%s::int[]) AND settled_at IS NULL "
    "LIMIT 1"
)


def collect_locked(user_ids: Iterable[int]) -> list[Transaction]:
    """Collect what users owe from their balance (after a credit), oldest debt first."""
    users = sorted(set(user_ids))
    if connection.vendor == "postgresql" and not ledger_pg.run(_ANY_OPEN_DEBT, [users]):
        return []  # the usual case, answered by a fixed statement instead of the ORM's
    open_debts = list(
        Receivable._base_manager.select_for_update()
        .filter(user_id__in=users, settled_at__isnull=True)
        .order_by("pk")
    )
    posted: list[Transaction] = []
    for debt in open_debts:
        take = min(ledger.balance_locked(debt.user_id), debt.outstanding_usd)
        if take <= 0:
            continue
        posted.append(
            ledger.post(
                user_id=debt.user_id,
                kind=TransactionType.REVERSAL,
                amount_usd=-take,
                idempotency_key=f"receivable:{debt.pk}:collect:{debt.collected_usd}",
                description=f"Owed for refunded deposit (receivable {debt.pk})",
                metadata={"receivable": debt.pk, "payment": str(debt.payment_id)},
            )
        )
        debt.collected_usd += take
        settled = timezone.now() if debt.outstanding_usd == 0 else None
        Receivable._base_manager.filter(pk=debt.pk).update(
            collected_usd=debt.collected_usd, settled_at=settled
        )
        logger.info("receivable %s: collected %s, %s left", debt.pk, take, debt.outstanding_usd)
    return posted


def owes(user_id: int) -> Decimal:
    """What the user still owes (0.00 when nothing)."""
    total = ZERO
    for debt in Receivable.objects.filter(user_id=user_id, settled_at__isnull=True):
        total += debt.outstanding_usd
    return total
