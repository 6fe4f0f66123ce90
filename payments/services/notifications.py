"""Operator notifications: the one writer of Notification rows; finds events, e-mails each once.

Events (one e-mail per event, deduplicated by ``Notification.key``, inserted with ON CONFLICT DO
NOTHING): a withdrawal pending longer than ``PAYMENTS_NOTIFY_WITHDRAWAL_WAITING_MINUTES``
(``withdrawal_waiting:<uuid>``), a withdrawal failed (``payout_failed:<uuid>``), a payment put
into review (``payment_in_review:<uuid>``) and a new open finding (``finding:<id>``; the
``payment_in_review`` finding a review records is left out: its payment has its own e-mail).

Only events of the last ``PAYMENTS_NOTIFY_LOOKBACK_HOURS`` (default 24) are looked at, so a
sweep reads a bounded, indexed slice of each table however large it grows, and a first install
e-mails nothing older than that (the dashboard shows it). Each sweep adds at most ``BATCH`` rows
of each kind; the rest follow on the next one.

Sending: ``notification_send`` claims the row (``SELECT ... FOR UPDATE SKIP LOCKED``) and checks
``sent_at`` again, so a duplicated or retried task never sends it twice; it holds the row until
the mail is handed over, and records each attempt and its error. The caller retries SMTP errors
(workers/tasks.py); the sweep hands back a row still unsent once it is ``RESEND_AFTER`` times
2**attempts old (a lost task, or retries used up), up to ``PAYMENTS_NOTIFY_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import enum
import logging
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import CharField, Exists, OuterRef, Q, Value
from django.db.models.functions import Cast, Concat
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from payments.models import LedgerDrift, Notification, Payment, WithdrawalRequest
from payments.models.notification import NotificationKind
from payments.models.ops import DriftKind
from payments.models.payment import PaymentStatus
from payments.models.withdrawal import WithdrawalStatus
from payments.money import format_usd

logger = logging.getLogger(__name__)

# The groups whose active staff members are mailed when PAYMENTS_OPERATOR_EMAILS is empty.
OPERATOR_GROUPS = ("approver", "operator", "supervisor")
BATCH = 200
RESEND_AFTER = timedelta(minutes=5)
SMTP_ERRORS: tuple[type[Exception], ...] = (smtplib.SMTPException, OSError)
# Findings whose event has an e-mail of its own.
_FINDINGS_WITH_OWN_EVENT = (DriftKind.PAYMENT_IN_REVIEW,)
_SUBJECT_PREFIX = "[Payments] "


class SendOutcome(enum.StrEnum):
    SENT = "sent"
    ALREADY_SENT = "already_sent"
    BUSY = "busy"  # another send holds the row right now
    NO_RECIPIENTS = "no_recipients"


@dataclass(frozen=True)
class SweepResult:
    created: dict[str, int]
    to_send: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {"created": self.created, "to_send": len(self.to_send)}


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def notifications_sweep(*, now: datetime | None = None) -> SweepResult:
    """Record a Notification for each new event; return the ids to send now."""
    now = now or timezone.now()
    since = now - timedelta(hours=_setting("PAYMENTS_NOTIFY_LOOKBACK_HOURS", 24))
    drafts = [
        *_waiting_withdrawals(now, since),
        *_failed_payouts(since),
        *_payments_in_review(since),
        *_new_findings(since),
    ]
    if drafts:
        Notification.objects.bulk_create(drafts, ignore_conflicts=True)
    new = list(
        Notification.objects.filter(
            key__in=[d.key for d in drafts], sent_at__isnull=True, attempts=0
        ).values_list("pk", flat=True)
    )
    created: dict[str, int] = {}
    for draft in drafts:
        created[draft.kind] = created.get(draft.kind, 0) + 1
    if drafts:
        logger.info("notifications recorded: %s", created)
    return SweepResult(created=created, to_send=[*new, *_due_again(now, since, new)])


def _due_again(now: datetime, since: datetime, exclude: list[int]) -> list[int]:
    """Unsent rows of the window whose last try is long enough ago (or that were never tried)."""
    rows = (
        Notification.objects.filter(
            sent_at__isnull=True,
            created_at__gte=since,
            attempts__lt=_setting("PAYMENTS_NOTIFY_MAX_ATTEMPTS", 12),
        )
        .exclude(pk__in=exclude)
        .order_by("created_at")
        .values_list("pk", "created_at", "attempts")[:BATCH]
    )
    return [pk for pk, created, tries in rows if now - created >= RESEND_AFTER * 2**tries]


def _unnotified(prefix: str) -> Q:
    """True for a row no notification has the key ``<prefix><pk>`` of yet."""
    key = Concat(Value(prefix), Cast(OuterRef("pk"), output_field=CharField()))
    return ~Q(Exists(Notification.objects.filter(key=key)))


def _draft(kind: str, key: str, subject: str, lines: Iterable[str]) -> Notification:
    subject = " ".join(f"{_SUBJECT_PREFIX}{subject}".split())[:200]
    body = "\n".join(line for line in lines if line) + "\n"
    return Notification(key=key, kind=kind, subject=subject, body=body)


def _admin_link(view: str, pk: Any) -> str:
    try:
        path = reverse(f"admin:payments_{view}_change", args=[pk])
    except NoReverseMatch:  # a host project without the admin mounted
        return ""
    base = str(getattr(settings, "PAYMENTS_PUBLIC_BASE_URL", "") or "").rstrip("/")
    return f"Open it in the admin: {base}{path}"


def _waiting_withdrawals(now: datetime, since: datetime) -> list[Notification]:
    minutes = _setting("PAYMENTS_NOTIFY_WITHDRAWAL_WAITING_MINUTES", 30)
    waited = timedelta(minutes=minutes)
    found = (
        WithdrawalRequest.objects.filter(
            status=WithdrawalStatus.PENDING,
            created_at__lte=now - waited,
            created_at__gte=since - waited,  # became "waiting" within the window
        )
        .filter(_unnotified(f"{NotificationKind.WITHDRAWAL_WAITING}:"))
        .select_related("user", "currency")
        .order_by("created_at")[:BATCH]
    )
    return [
        _draft(
            NotificationKind.WITHDRAWAL_WAITING,
            f"{NotificationKind.WITHDRAWAL_WAITING}:{w.pk}",
            f"Withdrawal {w.internal_withdrawal_id} waits for review ({minutes}+ min)",
            [
                f"Withdrawal {w.internal_withdrawal_id} of {format_usd(w.amount_usd)} "
                f"({w.currency.code}) by user {w.user.get_username()} (id {w.user_id}) has been "
                f"pending since {w.created_at:%Y-%m-%d %H:%M} UTC.",
                "Approve or reject it.",
                _admin_link("withdrawalrequest", w.pk),
            ],
        )
        for w in found
    ]


def _failed_payouts(since: datetime) -> list[Notification]:
    found = (
        WithdrawalRequest.objects.filter(status=WithdrawalStatus.FAILED, failed_at__gte=since)
        .filter(_unnotified(f"{NotificationKind.PAYOUT_FAILED}:"))
        .select_related("user", "currency")
        .order_by("failed_at")[:BATCH]
    )
    return [
        _draft(
            NotificationKind.PAYOUT_FAILED,
            f"{NotificationKind.PAYOUT_FAILED}:{w.pk}",
            f"Payout of withdrawal {w.internal_withdrawal_id} failed",
            [
                f"Withdrawal {w.internal_withdrawal_id} of {format_usd(w.amount_usd)} "
                f"({w.currency.code}) by user {w.user.get_username()} (id {w.user_id}) failed "
                f"at {w.failed_at:%Y-%m-%d %H:%M} UTC; its hold was refunded to the user.",
                f"Reason: {w.failure_reason or 'none given'}",
                _admin_link("withdrawalrequest", w.pk),
            ],
        )
        for w in found
    ]


def _payments_in_review(since: datetime) -> list[Notification]:
    found = (
        Payment.objects.filter(status=PaymentStatus.REVIEW, status_changed_at__gte=since)
        .filter(_unnotified(f"{NotificationKind.PAYMENT_IN_REVIEW}:"))
        .select_related("user", "currency")
        .order_by("status_changed_at")[:BATCH]
    )
    return [
        _draft(
            NotificationKind.PAYMENT_IN_REVIEW,
            f"{NotificationKind.PAYMENT_IN_REVIEW}:{p.pk}",
            f"Payment {p.internal_payment_id} needs a decision (in review)",
            [
                f"Payment {p.internal_payment_id} of {format_usd(p.amount_usd)} "
                f"({p.currency.code}) by user {p.user.get_username()} (id {p.user_id}) was put "
                "into review.",
                f"Reason: {p.review_reason or 'none given'}",
                "Credit what was received, credit in full (second operator) or reject it.",
                _admin_link("payment", p.pk),
            ],
        )
        for p in found
    ]


def _new_findings(since: datetime) -> list[Notification]:
    found = (
        LedgerDrift.objects.filter(resolved_at__isnull=True, first_seen_at__gte=since)
        .exclude(kind__in=_FINDINGS_WITH_OWN_EVENT)
        .filter(_unnotified(f"{NotificationKind.FINDING}:"))
        .order_by("first_seen_at")[:BATCH]
    )
    return [
        _draft(
            NotificationKind.FINDING,
            f"{NotificationKind.FINDING}:{d.pk}",
            f"Finding: {d.get_kind_display()} ({d.subject})",
            [
                f"Reconciliation found: {d.get_kind_display()}, about {d.subject}.",
                f"Expected: {d.expected or '-'}; actual: {d.actual or '-'}.",
                d.detail,
                "Nothing is corrected automatically: an operator decides.",
                _admin_link("ledgerdrift", d.pk),
            ],
        )
        for d in found
    ]


def operator_recipients() -> list[str]:
    """``PAYMENTS_OPERATOR_EMAILS``, or else the active staff of the operator groups and the
    active superusers that have an e-mail address; invalid addresses are left out."""
    configured: Any = getattr(settings, "PAYMENTS_OPERATOR_EMAILS", [])
    if isinstance(configured, str):
        configured = configured.split(",")
    addresses = [str(a).strip() for a in configured if str(a).strip()]
    if not addresses:
        user_model = get_user_model()
        field = user_model.get_email_field_name()
        addresses = list(
            user_model._default_manager.filter(is_active=True)
            .filter(Q(is_superuser=True) | Q(is_staff=True, groups__name__in=OPERATOR_GROUPS))
            .exclude(**{f"{field}__isnull": True})
            .exclude(**{field: ""})
            .order_by(field)
            .values_list(field, flat=True)
            .distinct()
        )
    found: dict[str, str] = {}
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            logger.warning("notification recipient skipped: not an e-mail address")
            continue
        found.setdefault(address.lower(), address)
    return list(found.values())


def notification_send(*, notification_id: int) -> SendOutcome:
    """E-mail one notification to the operators, once.

    Raises the mail backend's error (``smtplib.SMTPException``, ``OSError``, ...) after
    recording the attempt, so the caller can retry; the row stays unsent.
    """
    failure: Exception | None = None
    with transaction.atomic():
        row = (
            Notification.objects.select_for_update(skip_locked=True)
            .filter(pk=notification_id)
            .first()
        )
        if row is None:
            if not Notification.objects.filter(pk=notification_id).exists():
                raise Notification.DoesNotExist(f"No notification has id {notification_id}.")
            return SendOutcome.BUSY
        if row.sent_at is not None:
            return SendOutcome.ALREADY_SENT
        row.attempts += 1
        recipients = operator_recipients()
        if not recipients:
            row.last_error = (
                "No recipients: set PAYMENTS_OPERATOR_EMAILS, or give operators an e-mail."
            )
            row.save(update_fields=["attempts", "last_error"])
            logger.warning("notification id=%s not sent: no recipients", row.pk)
            return SendOutcome.NO_RECIPIENTS
        try:
            EmailMessage(subject=row.subject, body=row.body, to=recipients).send()
        except Exception as exc:  # noqa: BLE001 - recorded here, raised again below
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            row.save(update_fields=["attempts", "last_error"])
            failure = exc
        else:
            row.sent_at = timezone.now()
            row.recipients = recipients
            row.last_error = ""
            row.save(update_fields=["attempts", "sent_at", "recipients", "last_error"])
    if failure is not None:
        logger.warning(
            "notification id=%s not sent (attempt %s): %s",
            notification_id,
            row.attempts,
            type(failure).__name__,
        )
        raise failure
    logger.info("notification id=%s sent to %s recipient(s)", row.pk, len(recipients))
    return SendOutcome.SENT
