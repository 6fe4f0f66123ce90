"""Registering payments made through the ORM with NowPayments: at once, or by the worker sweep."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from payments.config import get_nowpayments_config, get_register_timeout
from payments.errors import (
    AmountBelowMinimum,
    ConfigurationError,
    CurrencyUnavailable,
    ProviderRejected,
    ProviderUnavailable,
)
from payments.models import Payment
from payments.models.payment import PaymentStatus
from payments.services.deposits.create import (
    CREATION_FIELDS,
    check_amount,
    copy_creation,
    create_at_provider,
)
from payments.services.deposits.moves import payment_move
from payments.services.providers.nowpayments.gateway import get_provider, refuse_inside_transaction
from payments.services.providers.nowpayments.provider import NowPaymentsProvider

logger = logging.getLogger(__name__)

# A registration that started this long ago without an answer may be tried again.
REGISTER_RETRY_AFTER = timedelta(minutes=5)

# What a registration may change on a payment (its creator's copy is refreshed with these).
REGISTERED_FIELDS = (
    *CREATION_FIELDS,
    "provider_requested_at",
    "status",
    "status_changed_at",
)

UNREACHABLE_NOTICE = (
    "NowPayments could not be reached to create this payment's address; a worker will retry "
    "shortly."
)

_Connect = Callable[[], AbstractContextManager[NowPaymentsProvider]]


def payment_register(*, payment_id: uuid.UUID) -> Payment:
    """Create at NowPayments a payment that exists only locally (made through the ORM).

    A claim on ``provider_requested_at`` keeps two workers from creating it twice. An outage
    raises ``ProviderUnavailable`` and leaves the claim, so the sweep tries again after
    ``REGISTER_RETRY_AFTER``.
    """
    refuse_inside_transaction()
    return _register(payment_id, lambda: nullcontext(get_provider()))


def payment_register_at_once(*, payment_id: uuid.UUID) -> Payment:
    """Register an ORM-made payment before its creator goes on, within
    ``PAYMENTS_REGISTER_TIMEOUT`` seconds; never raises because NowPayments is away.

    When NowPayments cannot be reached the payment stays pending without an address, says so
    in ``provider_error``, and its claim is released so the next sweep (every minute) retries
    it. A refusal fails it, as ``payment_register`` does.
    """
    if transaction.get_connection().in_atomic_block:
        # Only reachable when on-commit callbacks run inside a test's transaction.
        logger.warning("payment id=%s not registered at once: inside a transaction", payment_id)
        return Payment.objects.get(pk=payment_id)
    deadline = time.monotonic() + get_register_timeout()
    try:
        return _register(payment_id, lambda: _quick_provider(deadline))
    except ProviderUnavailable as exc:
        _release(payment_id, notice=UNREACHABLE_NOTICE)
        logger.warning("payment id=%s left to the worker: %s", payment_id, exc.message)
    except ConfigurationError as exc:
        _release(payment_id, notice="")
        logger.warning("payment id=%s left to the worker: %s", payment_id, exc.message)
    return Payment.objects.get(pk=payment_id)


def payments_awaiting_registration(*, limit: int = 500) -> list[uuid.UUID]:
    """Pending payments with no provider id whose registration is not under way."""
    cutoff = timezone.now() - REGISTER_RETRY_AFTER
    return list(
        Payment.objects.filter(status=PaymentStatus.PENDING, provider_payment_id__isnull=True)
        .filter(Q(provider_requested_at__isnull=True) | Q(provider_requested_at__lt=cutoff))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def _register(payment_id: uuid.UUID, connect: _Connect) -> Payment:
    now = timezone.now()
    claimed = (
        Payment._base_manager.filter(
            pk=payment_id, provider_payment_id__isnull=True, status=PaymentStatus.PENDING
        )
        .filter(
            Q(provider_requested_at__isnull=True)
            | Q(provider_requested_at__lt=now - REGISTER_RETRY_AFTER)
        )
        .update(provider_requested_at=now)
    )
    payment = Payment.objects.select_related("currency").get(pk=payment_id)
    if not claimed:
        return payment
    try:
        with connect() as provider:
            check_amount(payment.amount_usd, payment.currency, provider=provider)
        with connect() as provider:
            report = create_at_provider(
                internal_id=payment.internal_payment_id,
                amount_usd=payment.amount_usd,
                currency=payment.currency,
                description=payment.description,
                provider=provider,
            )
    except (AmountBelowMinimum, CurrencyUnavailable, ProviderRejected) as exc:
        # NowPayments will never accept it as it stands: fail it visibly.
        with transaction.atomic():
            payment = Payment._base_manager.select_for_update().get(pk=payment_id)
            if payment.status == PaymentStatus.PENDING and not payment.provider_payment_id:
                payment = payment_move(
                    payment_id=payment_id,
                    status=PaymentStatus.FAILED,
                    reason=f"{exc.code}: {exc.message}",
                )
        logger.warning("payment id=%s could not be registered: %s", payment_id, exc.code)
        return payment
    with transaction.atomic():
        payment = Payment._base_manager.select_for_update().get(pk=payment_id)
        if payment.provider_payment_id is None:
            copy_creation(payment, report, timezone.now())
            Payment._base_manager.filter(pk=payment_id).update(
                **{name: getattr(payment, name) for name in CREATION_FIELDS}
            )
    logger.info("payment registered id=%s provider_id=%s", payment.pk, payment.provider_payment_id)
    return payment


def _quick_provider(deadline: float) -> NowPaymentsProvider:
    """A client whose calls give up at ``deadline`` (no retries): each call gets what is left."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise ProviderUnavailable("NowPayments did not answer within PAYMENTS_REGISTER_TIMEOUT.")
    config = get_nowpayments_config()
    return NowPaymentsProvider(
        replace(
            config,
            timeout=left,
            connect_timeout=min(config.connect_timeout, left),
            max_retries=0,
        )
    )


def _release(payment_id: uuid.UUID, *, notice: str) -> None:
    """Let the next sweep retry at once instead of after REGISTER_RETRY_AFTER."""
    changes: dict[str, object] = {"provider_requested_at": None, "updated_at": timezone.now()}
    if notice:
        changes["provider_error"] = notice[:500]
    Payment._base_manager.filter(
        pk=payment_id, provider_payment_id__isnull=True, status=PaymentStatus.PENDING
    ).update(**changes)
