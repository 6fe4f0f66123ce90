"""The completed payments still waiting for their deposit: what the settle sweep reads."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from payments.models.payment import Payment


class SettlementDue(models.Model):
    """A completed payment without its DEPOSIT posting yet.

    On PostgreSQL the database keeps these rows, whoever writes (migration 0021): a payment
    becoming completed adds its row, its deposit posting (or the payment leaving completed)
    removes it. So the settle sweep reads the few payments due, not every payment ever made,
    and its cost does not grow with the ledger. The application role may read the rows but
    neither delete nor change them; ``payments_settlement_due_rebuild()`` recomputes them from
    the payments and the ledger (after a bulk load with triggers off). The reconciliation's
    ``unsettled_payment`` check still looks at every payment, independently of this table.
    SQLite (the embedded demo) has the table but no triggers: the sweep reads payments there.
    """

    payment = models.OneToOneField(
        Payment,
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,  # payments are never deleted; no foreign-key check on the hot path
        related_name="+",
    )
    due_since = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "payment due for settlement"
        verbose_name_plural = "payments due for settlement"

    def __str__(self) -> str:
        return f"payment {self.payment_id} due since {self.due_since:%Y-%m-%d %H:%M}"
