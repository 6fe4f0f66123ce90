"""The seed's ORM entry points, wired to the services: the one exception to "models import
nothing above them".

The seed writes money through the ORM (``Transaction.objects.create(...)``,
``WithdrawalRequest.objects.create(...)`` then ``.save()`` after a status change,
``payment.status = ...; payment.save()``). The models hand those calls to the handlers
connected here at ``AppConfig.ready()``, so they run exactly the rules the API, the admin and
the workers run: the ledger's locks and chain, the withdrawal hold and refund, the payment
status machine and its settlement, and a new payment's registration with NowPayments.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from payments import ledger
from payments.errors import PaymentsError
from payments.models.common import connect_orm_handler
from payments.models.payment import Payment
from payments.services.deposits.moves import payment_save_instance
from payments.services.deposits.register import REGISTERED_FIELDS, payment_register_at_once
from payments.services.withdrawals import lifecycle


def _payment_save(payment: Payment, *, previous_status: str | None) -> Payment:
    # Django's convention for a refused model save is ValidationError; the domain error's
    # sentence and code travel with it.
    try:
        return payment_save_instance(payment, previous_status=previous_status)
    except PaymentsError as exc:
        raise ValidationError(exc.message, code=exc.code) from exc


def _payment_created(payment: Payment) -> None:
    # The seed's Payment.objects.create(...) then print(payment.qr_data): registered with
    # NowPayments before the call returns, or once the surrounding transaction commits (the
    # provider is never called while holding a transaction open).
    if payment.status != Payment.PaymentStatus.PENDING:
        return
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: _register(payment), robust=True)
    else:
        _register(payment)


def _register(payment: Payment) -> None:
    payment_register_at_once(payment_id=payment.pk)
    # The creator's object shows what the registration stored (address, amount, or failure).
    payment.refresh_from_db(fields=REGISTERED_FIELDS)


def connect() -> None:
    handlers: dict[str, Any] = {
        "transaction.create": ledger.record,
        "withdrawal.create": lifecycle.withdrawal_create_from_instance,
        "withdrawal.save": lifecycle.withdrawal_save_instance,
        "payment.save": _payment_save,
        "payment.created": _payment_created,
    }
    for name, handler in handlers.items():
        connect_orm_handler(name, handler)
