"""The withdrawal review page's figures: the user's balance, history and totals, who else used the
address, the payout at NowPayments and the request's timeline, in a fixed number of queries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from payments.models import Payment, Transaction, UserBalance, WithdrawalRequest
from payments.models.payment import PaymentStatus
from payments.models.withdrawal import WithdrawalStatus

# Rows listed per section; the totals always cover the whole history (aggregated in SQL).
RECENT_POSTINGS = 20
RECENT_PAYMENTS = 10
RECENT_WITHDRAWALS = 10
ADDRESS_USERS = 20
LOG_ENTRIES = 100

ZERO = Decimal("0.00")
_OPEN = (WithdrawalStatus.PENDING, WithdrawalStatus.APPROVED, WithdrawalStatus.PROCESSING)
# One note line, as the lifecycle writes it: "2026-12-02 04:20 UTC alice: text".
_NOTE = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC (\S+): (.*)$")
_STEPS = (
    ("created_at", "Requested"),
    ("approved_at", "Approved"),
    ("processing_at", "Processing (payout started)"),
    ("completed_at", "Completed"),
    ("rejected_at", "Rejected (hold refunded)"),
    ("cancelled_at", "Cancelled by the user (hold refunded)"),
    ("failed_at", "Failed (hold refunded)"),
)


@dataclass(frozen=True)
class Totals:
    count: int
    sum_usd: Decimal


@dataclass(frozen=True)
class AddressUser:
    """Another user who used the address under review."""

    user_id: int
    username: str
    withdrawals: int  # withdrawals of theirs to the address
    same_extra_id: int  # of those, with the same memo / tag as this request
    payments: int  # their deposits whose pay address it is


@dataclass(frozen=True)
class Payout:
    payout_id: str
    batch_id: str
    status: str
    error: str
    transaction_hash: str
    hash_url: str | None


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    kind: str  # "status", "note" or "log"
    actor: str
    text: str


@dataclass(frozen=True)
class WithdrawalReview:
    withdrawal: WithdrawalRequest
    holding: bool  # its amount is still held on the balance (pending, approved, processing)
    account_age_days: int
    balance: UserBalance | None
    postings: list[Transaction]
    postings_total: Totals
    credits_usd: Decimal
    debits_usd: Decimal
    payments: list[Payment]
    payments_total: Totals
    payments_credited: Totals
    withdrawals: list[WithdrawalRequest]
    withdrawals_total: Totals
    withdrawals_completed: Totals
    withdrawals_open: Totals
    address_url: str | None
    address_users: list[AddressUser]
    payout: Payout | None
    hash_url: str | None  # explorer link of the request's own transaction hash
    timeline: list[TimelineEvent]


def withdrawal_review_build(*, withdrawal: WithdrawalRequest) -> WithdrawalReview:
    """Everything the review page shows about ``withdrawal`` (loaded with its user, currency and
    reviewer): ten queries (eleven before the content type is cached), whatever the size of
    the user's history."""
    user = withdrawal.user
    balance = UserBalance.objects.filter(user_id=user.pk).first()

    postings = Transaction.objects.filter(user_id=user.pk)
    sums = postings.aggregate(
        count=Count("pk"),
        credits=Coalesce(Sum("amount_usd", filter=Q(amount_usd__gt=0)), ZERO),
        debits=Coalesce(Sum("amount_usd", filter=Q(amount_usd__lt=0)), ZERO),
    )
    payments = Payment.objects.filter(user_id=user.pk)
    completed = Q(status=PaymentStatus.COMPLETED)
    payment_sums = payments.aggregate(
        count=Count("pk"),
        ordered=Coalesce(Sum("amount_usd"), ZERO),
        completed=Count("pk", filter=completed),
        credited=Coalesce(Sum(Coalesce("credited_usd", "amount_usd"), filter=completed), ZERO),
    )
    others = WithdrawalRequest.objects.filter(user_id=user.pk).exclude(pk=withdrawal.pk)
    done, still_open = Q(status=WithdrawalStatus.COMPLETED), Q(status__in=_OPEN)
    held = others.aggregate(
        count=Count("pk"),
        total=Coalesce(Sum("amount_usd"), ZERO),
        completed=Count("pk", filter=done),
        completed_sum=Coalesce(Sum("amount_usd", filter=done), ZERO),
        open=Count("pk", filter=still_open),
        open_sum=Coalesce(Sum("amount_usd", filter=still_open), ZERO),
    )
    return WithdrawalReview(
        withdrawal=withdrawal,
        holding=withdrawal.status in _OPEN,
        account_age_days=(timezone.now() - user.date_joined).days,
        balance=balance,
        postings=list(postings.order_by("-sequence")[:RECENT_POSTINGS]),
        postings_total=Totals(sums["count"], sums["credits"] + sums["debits"]),
        credits_usd=sums["credits"],
        debits_usd=sums["debits"],
        payments=list(
            payments.select_related("currency").order_by("-created_at")[:RECENT_PAYMENTS]
        ),
        payments_total=Totals(payment_sums["count"], payment_sums["ordered"]),
        payments_credited=Totals(payment_sums["completed"], payment_sums["credited"]),
        withdrawals=list(
            others.select_related("currency").order_by("-created_at")[:RECENT_WITHDRAWALS]
        ),
        withdrawals_total=Totals(held["count"], held["total"]),
        withdrawals_completed=Totals(held["completed"], held["completed_sum"]),
        withdrawals_open=Totals(held["open"], held["open_sum"]),
        address_url=withdrawal.currency.explorer_address_url(withdrawal.wallet_address),
        address_users=_address_users(withdrawal),
        payout=_payout(withdrawal),
        hash_url=withdrawal.currency.explorer_url(withdrawal.transaction_hash),
        timeline=_timeline(withdrawal),
    )


def _address_users(withdrawal: WithdrawalRequest) -> list[AddressUser]:
    """Other users who withdrew to this address or were given it to pay a deposit into.

    Compared case-insensitively: an EVM address is the same whatever its checksum casing.
    """
    address = withdrawal.wallet_address
    same_memo = Q(wallet_extra_id=withdrawal.wallet_extra_id) if withdrawal.wallet_extra_id else Q()
    sent = (
        WithdrawalRequest.objects.filter(wallet_address__iexact=address)
        .exclude(user_id=withdrawal.user_id)
        .values("user_id", "user__username")
        .annotate(n=Count("pk"), same=Count("pk", filter=same_memo))
        .order_by("-n", "user_id")[:ADDRESS_USERS]
    )
    paid_in = (
        Payment.objects.filter(pay_address__iexact=address)
        .exclude(user_id=withdrawal.user_id)
        .values("user_id", "user__username")
        .annotate(n=Count("pk"))
        .order_by("-n", "user_id")[:ADDRESS_USERS]
    )
    found: dict[int, dict[str, Any]] = {}
    for row in sent:
        entry = found.setdefault(row["user_id"], {"name": row["user__username"], "p": 0})
        entry.update(w=row["n"], same=row["same"])
    for row in paid_in:
        found.setdefault(row["user_id"], {"name": row["user__username"]})["p"] = row["n"]
    return [
        AddressUser(
            user_id=user_id,
            username=entry["name"],
            withdrawals=entry.get("w", 0),
            same_extra_id=entry.get("same", 0),
            payments=entry.get("p", 0),
        )
        for user_id, entry in found.items()
    ]


def _payout(withdrawal: WithdrawalRequest) -> Payout | None:
    """The NowPayments payout as last recorded (the poller records failures as it sees them)."""
    if not (withdrawal.provider_payout_id or withdrawal.provider_batch_id):
        return None
    data = withdrawal.provider_data or {}
    raw = data.get("withdrawal")
    item: dict[str, Any] = raw if isinstance(raw, dict) else {}
    tx_hash = withdrawal.transaction_hash or str(item.get("hash") or "")
    return Payout(
        payout_id=withdrawal.provider_payout_id,
        batch_id=withdrawal.provider_batch_id,
        status=str(data.get("failed_status") or item.get("status") or "not reported yet"),
        error=str(data.get("failed_error") or item.get("error") or ""),
        transaction_hash=tx_hash,
        hash_url=withdrawal.currency.explorer_url(tx_hash) if tx_hash else None,
    )


def _timeline(withdrawal: WithdrawalRequest) -> list[TimelineEvent]:
    """The status steps, the notes and the admin's LogEntry rows of the request, by time."""
    events = []
    reviewer = withdrawal.admin_user.get_username() if withdrawal.admin_user else ""
    actors = {
        "created_at": withdrawal.user.get_username(),
        "approved_at": reviewer,
        "rejected_at": reviewer,
    }
    details = {"rejected_at": withdrawal.rejection_reason, "failed_at": withdrawal.failure_reason}
    for field, label in _STEPS:
        at = getattr(withdrawal, field)
        if at is not None:
            detail = details.get(field, "")
            text = f"{label}: {detail}" if detail else label
            events.append(TimelineEvent(at, "status", actors.get(field, ""), text))
    # A note's stamp has only the minute: it is placed no earlier than the request and the
    # note before it (notes are appended in order); a line written another way (an ORM edit)
    # takes the previous note's time.
    at = withdrawal.created_at
    for line in withdrawal.admin_notes.splitlines():
        if not line.strip():
            continue
        match = _NOTE.match(line)
        if match:
            stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
            at, actor, text = max(at, stamp), match[2], match[3]
        else:
            actor, text = "", line
        events.append(TimelineEvent(at, "note", actor, text))
    content_type = ContentType.objects.get_for_model(WithdrawalRequest)
    entries = (
        LogEntry.objects.filter(content_type_id=content_type.pk, object_id=str(withdrawal.pk))
        .select_related("user")
        .order_by("-action_time", "-pk")[:LOG_ENTRIES]
    )
    for entry in reversed(list(entries)):
        author: Any = entry.user
        text = entry.get_change_message()
        events.append(TimelineEvent(entry.action_time, "log", author.get_username(), text))
    return sorted(events, key=lambda event: event.at)
