"""The Payment aggregate: the only writer of Payment rows and the one home of their status machine.

- ``create``: create deposits at NowPayments;
- ``register``: register payments made through the ORM (at once, or by the worker sweep);
- ``statuses``: how NowPayments' payment statuses map onto ours;
- ``progress``: the status machine, for IPN, poll, admin and the seed's ORM save alike;
- ``settle``: the one settlement routine (batches; a single payment is a batch of one);
- ``poll`` and ``expire``: keeping active payments in step with NowPayments.
"""

from payments.services.deposits.create import payment_create
from payments.services.deposits.expire import payments_expire
from payments.services.deposits.moves import payment_move, payment_save_instance
from payments.services.deposits.poll import payment_refresh, payments_poll
from payments.services.deposits.progress import (
    ApplyResult,
    payment_apply_report,
    payments_apply_reports,
)
from payments.services.deposits.register import (
    payment_register,
    payment_register_at_once,
    payments_awaiting_registration,
)
from payments.services.deposits.review import (
    payment_review_approve,
    payment_review_refuse,
    payment_review_request,
)
from payments.services.deposits.settle import (
    deposit_posting,
    payment_settle,
    payments_settle_many,
    unsettled_payment_ids,
)

__all__ = [
    "ApplyResult",
    "deposit_posting",
    "payment_apply_report",
    "payment_create",
    "payment_move",
    "payment_refresh",
    "payment_register",
    "payment_register_at_once",
    "payment_review_approve",
    "payment_review_refuse",
    "payment_review_request",
    "payment_save_instance",
    "payment_settle",
    "payments_apply_reports",
    "payments_awaiting_registration",
    "payments_expire",
    "payments_poll",
    "payments_settle_many",
    "unsettled_payment_ids",
]
