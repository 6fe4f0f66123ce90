"""UserBalance: the per-user cache of the ledger, written only by payments.ledger."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from payments.money import format_usd

ZERO = Decimal("0.00")


_CACHE_MESSAGE = "A balance is computed from the ledger; post a Transaction to change it."


class UserBalanceQuerySet(models.QuerySet["UserBalance"]):
    """Balances change only through payments.ledger (which writes through ``_base_manager``)."""

    def update(self, **kwargs: Any) -> int:
        raise ValidationError(_CACHE_MESSAGE)

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        raise ValidationError(_CACHE_MESSAGE)

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ValidationError("Balances are kept for the audit trail and cannot be deleted.")

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[UserBalance]:
        objs = list(objs)
        if any(
            o.balance_usd or o.transaction_count or o.total_deposited or o.total_withdrawn
            for o in objs
        ):
            raise ValidationError("A new balance starts at zero; post a Transaction to fund it.")
        return super().bulk_create(objs, *args, **kwargs)


class UserBalanceManager(models.Manager["UserBalance"]):
    def get_queryset(self) -> UserBalanceQuerySet:
        return UserBalanceQuerySet(self.model, using=self._db)

    def get_or_create_for_user(self, user: Any) -> UserBalance:
        """The user's balance row, created empty if the user has none yet."""
        self.bulk_create([self.model(user_id=user.pk)], ignore_conflicts=True)
        return self.get(user_id=user.pk)


class UserBalance(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="balance"
    )
    balance_usd = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    total_deposited = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    total_withdrawn = models.DecimalField(max_digits=14, decimal_places=2, default=ZERO)
    transaction_count = models.PositiveBigIntegerField(
        default=0, help_text="Number of postings; equals the sequence of the last one."
    )
    last_transaction_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserBalanceManager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(balance_usd__gte=0), name="userbalance_nonneg"
            ),
            models.CheckConstraint(
                condition=models.Q(total_deposited__gte=0), name="userbalance_deposited_nonneg"
            ),
            models.CheckConstraint(
                condition=models.Q(total_withdrawn__gte=0), name="userbalance_withdrawn_nonneg"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.balance_display}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValidationError(_CACHE_MESSAGE)
        if self._state.adding and (self.balance_usd or self.transaction_count):
            raise ValidationError("A new balance starts at zero; post a Transaction to fund it.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError("Balances are kept for the audit trail and cannot be deleted.")

    @property
    def balance_display(self) -> str:
        return f"{format_usd(self.balance_usd)} USD"

    @property
    def is_empty(self) -> bool:
        return self.balance_usd == 0

    @property
    def has_transactions(self) -> bool:
        return self.transaction_count > 0
