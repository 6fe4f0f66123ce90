"""Payment: a cryptocurrency deposit a user makes through NowPayments."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.functions import Upper
from django.urls import reverse
from django.utils import timezone

from payments.models.common import Provider, generate_public_id, orm_handler, status_check
from payments.models.uris import payment_uri
from payments.money import format_usd


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CONFIRMING = "confirming", "Confirming"
    CONFIRMED = "confirmed", "Confirmed"
    COMPLETED = "completed", "Completed"
    PARTIALLY_PAID = "partially_paid", "Partially paid"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"
    REFUNDED = "refunded", "Refunded"
    CANCELLED = "cancelled", "Cancelled"
    REVIEW = "review", "In review"


# The status machine as data (DESIGN.md §5): forward only. The exceptions are the provider's
# word on money: a refund of a completed payment reverses it, and money reported on a payment
# we had closed (expired, failed, cancelled) puts it before an operator (review).
# PostgreSQL enforces the same table (migration 0009); a test checks that the two agree.
_S = PaymentStatus
_CLOSING = frozenset({_S.COMPLETED, _S.REVIEW, _S.FAILED, _S.EXPIRED, _S.REFUNDED, _S.CANCELLED})
PAYMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    _S.PENDING: frozenset({_S.CONFIRMING, _S.CONFIRMED, _S.PARTIALLY_PAID}) | _CLOSING,
    _S.CONFIRMING: frozenset({_S.CONFIRMED, _S.PARTIALLY_PAID}) | _CLOSING,
    _S.CONFIRMED: frozenset({_S.PARTIALLY_PAID}) | _CLOSING,
    _S.PARTIALLY_PAID: _CLOSING,
    _S.REVIEW: frozenset({_S.COMPLETED, _S.FAILED, _S.REFUNDED, _S.CANCELLED}),
    _S.COMPLETED: frozenset({_S.REFUNDED}),
    _S.FAILED: frozenset({_S.REVIEW}),
    _S.EXPIRED: frozenset({_S.REVIEW}),
    _S.REFUNDED: frozenset(),
    _S.CANCELLED: frozenset({_S.REVIEW}),
}
# Statuses the provider does not move on by itself (polling stops; reconciliation still looks).
FINAL_STATUSES = frozenset({_S.COMPLETED, _S.FAILED, _S.EXPIRED, _S.REFUNDED, _S.CANCELLED})
# Waiting on the provider: polled, expired by the provider's word.
ACTIVE_STATUSES = frozenset({_S.PENDING, _S.CONFIRMING, _S.CONFIRMED, _S.PARTIALLY_PAID})

_STATUS_COLORS = {
    PaymentStatus.PENDING: "warning",
    PaymentStatus.CONFIRMING: "info",
    PaymentStatus.CONFIRMED: "info",
    PaymentStatus.COMPLETED: "success",
    PaymentStatus.PARTIALLY_PAID: "warning",
    PaymentStatus.FAILED: "danger",
    PaymentStatus.EXPIRED: "secondary",
    PaymentStatus.REFUNDED: "secondary",
    PaymentStatus.CANCELLED: "secondary",
    PaymentStatus.REVIEW: "warning",
}


# QR codes (payments/qr.py): square, in pixels.
QR_MIN_SIZE, QR_DEFAULT_SIZE, QR_MAX_SIZE = 50, 200, 1000


def can_move(old: str, new: str) -> bool:
    """Whether a payment may go from status old to status new (staying put is no move)."""
    return old == new or new in PAYMENT_TRANSITIONS.get(old, frozenset())


# Fixed at creation: changing them would credit another amount, asset or user.
FROZEN_FIELDS = ("user_id", "amount_usd", "currency_id", "internal_payment_id")

_CONTRACT_MESSAGE = (
    "A payment's status, amount, currency and user change only through "
    "payments.services.deposits (or payment.save(), which goes through it)."
)


class PaymentQuerySet(models.QuerySet["Payment"]):
    """Bulk writes of what the status machine owns would skip its rules: refused."""

    _GUARDED = frozenset({"status", "user", "currency", *FROZEN_FIELDS})

    def update(self, **kwargs: Any) -> int:
        if self._GUARDED & set(kwargs):
            raise ValidationError(_CONTRACT_MESSAGE)
        return super().update(**kwargs)

    def bulk_update(self, objs: Any, fields: Any, *args: Any, **kwargs: Any) -> int:
        if self._GUARDED & set(fields):
            raise ValidationError(_CONTRACT_MESSAGE)
        return super().bulk_update(objs, fields, *args, **kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ValidationError("Payments are kept for the audit trail.")


class Payment(models.Model):
    PaymentStatus = PaymentStatus

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payments"
    )
    internal_payment_id = models.CharField(max_length=40, unique=True, editable=False)
    amount_usd = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.ForeignKey("payments.Currency", on_delete=models.PROTECT)
    pay_amount = models.DecimalField(max_digits=36, decimal_places=18, null=True, blank=True)
    actual_amount = models.DecimalField(
        max_digits=36, decimal_places=18, null=True, blank=True, help_text="Crypto received."
    )
    actual_amount_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    provider = models.CharField(
        max_length=32, choices=Provider.choices, default=Provider.NOWPAYMENTS
    )
    provider_payment_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    status = models.CharField(
        max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.PENDING
    )
    pay_address = models.CharField(max_length=255, blank=True)
    pay_extra_id = models.CharField(max_length=255, blank=True, help_text="Memo / destination tag.")
    transaction_hash = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    provider_data = models.JSONField(
        default=dict, blank=True, encoder=DjangoJSONEncoder, help_text="Last raw provider payload."
    )
    provider_error = models.CharField(max_length=500, blank=True)
    credited_usd = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="What the deposit credits under the deposit policy (empty: the price).",
    )
    review_reason = models.CharField(
        max_length=300, blank=True, help_text="Why the payment waits for an operator."
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    provider_checked_at = models.DateTimeField(null=True, blank=True)
    provider_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When creating it at NowPayments was last attempted."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PaymentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="payment_status_created"),
            models.Index(fields=["user", "-created_at"], name="payment_user_created"),
            # The admin's default order (newest first, then -pk), read backwards: a page of
            # the list is a page of this index whatever the table holds.
            models.Index(fields=["created_at", "id"], name="payment_created_id"),
            # Reconciliation's incremental pass: the payments whose status moved lately.
            models.Index(fields=["status_changed_at"], name="payment_status_changed"),
            # The poll's recheck of recent credits (completed within REFUND_WATCH): a range of
            # the latest completions, not every completed payment there ever was.
            models.Index(
                fields=["completed_at"],
                condition=models.Q(status="completed"),
                name="payment_completed_recent",
            ),
            # The withdrawal review looks up who else used an address, ignoring case.
            models.Index(Upper("pay_address"), name="payment_pay_address_upper"),
        ]
        constraints = [
            status_check("status", PaymentStatus, "payment_status_valid"),
            models.CheckConstraint(condition=models.Q(amount_usd__gt=0), name="payment_amount_pos"),
            models.CheckConstraint(
                condition=models.Q(pay_amount__isnull=True) | models.Q(pay_amount__gt=0),
                name="payment_pay_amount_pos",
            ),
            models.CheckConstraint(
                condition=models.Q(actual_amount__isnull=True) | models.Q(actual_amount__gte=0),
                name="payment_actual_amount_nonneg",
            ),
            models.CheckConstraint(
                condition=models.Q(credited_usd__isnull=True) | models.Q(credited_usd__gt=0),
                name="payment_credit_positive",
            ),
        ]
        permissions = [
            ("settle_payment", "Can mark a payment completed by hand"),
            ("resolve_payment", "Can resolve a payment in review"),
            ("approve_full_credit", "Can approve crediting a payment in review in full"),
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded_status: str | None = None if self._state.adding else self.status

    def __str__(self) -> str:
        return f"{self.internal_payment_id} {self.amount_display} {self.status}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.internal_payment_id:
            self.internal_payment_id = generate_public_id("PAY")
        if self._state.adding:
            super().save(*args, **kwargs)
            if not self.provider_payment_id:
                # Made through the ORM (the seed's Payment.objects.create): registered with
                # NowPayments at once, or on commit (payments.orm_compat).
                orm_handler("payment.created")(self)
        else:
            # A change of an existing payment (the seed's "update status manually" and its
            # provider snippet) runs the deposits status machine (payments.orm_compat): a
            # NowPayments status name is mapped, the move is checked, a completion is settled.
            orm_handler("payment.save")(self, previous_status=self._loaded_status)
        self._loaded_status = self.status

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError("Payments are kept for the audit trail.")

    # --- derived values the seed names --------------------------------------------------

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> Payment:
        instance = super().from_db(db, field_names, values)
        instance._loaded_status = instance.__dict__.get("status")
        return instance

    def refresh_from_db(
        self,
        using: str | None = None,
        fields: Iterable[str] | None = None,
        from_queryset: models.QuerySet[Payment] | None = None,
    ) -> None:
        # What was read is now the status a later save() moves from.
        fields = None if fields is None else list(fields)
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        if fields is None or "status" in fields:
            self._loaded_status = self.status

    @property
    def amount_display(self) -> str:
        return f"{format_usd(self.amount_usd)} USD"

    @property
    def is_pending(self) -> bool:
        return self.status == PaymentStatus.PENDING

    @property
    def is_completed(self) -> bool:
        return self.status == PaymentStatus.COMPLETED

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_expired(self) -> bool:
        return self.status == PaymentStatus.EXPIRED or (
            self.expires_at is not None
            and self.status not in FINAL_STATUSES
            and self.expires_at <= timezone.now()
        )

    @property
    def status_color(self) -> str:
        return _STATUS_COLORS.get(PaymentStatus(self.status), "secondary")

    @property
    def credited_amount_usd(self) -> Decimal:
        """What a completed payment credits: what the deposit policy decided from what was
        received, or the price for a payment completed by hand (the seed's ORM update)."""
        return self.credited_usd if self.credited_usd is not None else self.amount_usd

    @property
    def qr_data(self) -> str | None:
        """What a wallet scans: the network's payment URI with the amount where one exists
        (``bitcoin:``, EIP-681 ...), the bare address otherwise; None before there is an
        address. A memo or destination tag (``pay_extra_id``) is shown beside it, not in it."""
        if not self.pay_address:
            return None
        return payment_uri(
            code=self.currency.code, address=self.pay_address, amount=self.pay_amount
        )

    def get_qr_code_url(self, size: int = QR_DEFAULT_SIZE, fmt: str = "png") -> str | None:
        """Our own endpoint's URL for this payment's QR code (PNG or SVG), None before there is
        an address: the address never goes to a third party."""
        if not self.pay_address:
            return None
        size = max(QR_MIN_SIZE, min(int(size), QR_MAX_SIZE))
        path = reverse("payments:payment-qr", kwargs={"payment_id": self.pk, "fmt": fmt})
        return f"{path}?size={size}"

    def get_explorer_link(self) -> str | None:
        if not self.transaction_hash:
            return None
        return self.currency.explorer_url(self.transaction_hash)
