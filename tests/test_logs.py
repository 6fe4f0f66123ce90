"""Quiet, honest logs: a refusal repeated every cycle is logged once an hour, then counted.

The limiter and the cycle summary (payments/logs.py) on their own with a controlled clock; the
poll and payout sweeps against the sandbox over real HTTP; the LOGGING filters as settings.py
installs them, fed by the real NowPayments client against a port nobody listens on.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from payments.logs import CycleWarnings, RepeatFilter, RepeatLimiter
from payments.services import deposits as service
from payments.services.deposits import poll
from payments.services.withdrawals import payouts

POLL_LOGGER = "payments.services.deposits.poll"
TRANSPORT_LOGGER = "payments.services.providers.nowpayments.transport"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture, name: str, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name and r.levelno >= level]


# --- the limiter ----------------------------------------------------------------------------


def test_the_limiter_lets_one_occurrence_an_hour_through_and_counts_the_rest() -> None:
    clock = Clock()
    limiter = RepeatLimiter(window_seconds=3600, clock=clock)
    assert limiter.hit("refused", "p1").log
    assert not limiter.hit("refused", "p1").log
    assert limiter.hit("refused", "p2").log  # another subject is another line
    assert limiter.hit("other event", "p1").log  # and so is another event
    clock.now += 3599
    assert not limiter.hit("refused", "p1").log
    clock.now += 2  # the hour has rolled over: logged again, with what was held back
    rolled = limiter.hit("refused", "p1")
    assert rolled.log
    assert rolled.repeats == 2
    assert not limiter.hit("refused", "p1").log
    assert limiter.clear("refused", "p1") == 1  # recovered after one unlogged repeat
    assert limiter.clear("refused", "p1") is None
    assert limiter.hit("refused", "p1").log  # a new refusal after recovery is news


def test_the_limiter_forgets_its_oldest_subjects_first() -> None:
    limiter = RepeatLimiter(max_keys=3)
    for subject in ("a", "b", "c", "d"):
        assert limiter.hit("e", subject).log
    assert limiter.active("e") == 3
    assert limiter.hit("e", "a").log  # forgotten, so logged again
    assert not limiter.hit("e", "d").log


def test_a_cycle_logs_a_few_subjects_and_sums_up_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limiter = RepeatLimiter(clock=clock)
    logger = logging.getLogger("tests.cycle")
    caplog.set_level(logging.DEBUG, logger="tests.cycle")

    def cycle(refused: Sequence[str], recovered: Sequence[str] = ()) -> list[logging.LogRecord]:
        caplog.clear()
        warnings = CycleWarnings(logger, limiter, "thing not read", "thing %s not read: %s")
        for subject in refused:
            warnings.refused(subject, "provider_rejected")
        for subject in recovered:
            warnings.recovered(subject)
        warnings.flush()
        return [r for r in caplog.records if r.levelno >= logging.INFO]

    subjects = [f"p{n}" for n in range(10)]
    first = cycle(subjects)
    assert [r.getMessage() for r in first] == [
        "thing p0 not read: provider_rejected",
        "thing p1 not read: provider_rejected",
        "thing p2 not read: provider_rejected",
        "thing not read: 7 more (provider_rejected), e.g. p3, p4, p5; "
        "each is logged again after an hour",
    ]
    assert all(r.levelno == logging.WARNING for r in first)
    # The same refusals on the next cycles: nothing at INFO or above, everything at DEBUG.
    assert cycle(subjects) == []
    assert cycle(subjects) == []
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 10
    # Half of them recover: one line for all of them, with what was not logged.
    recovered = cycle(subjects[5:], recovered=subjects[:5])
    assert [r.getMessage() for r in recovered] == [
        "thing not read: 5 recovered (10 repeated failures were not logged)"
    ]
    assert recovered[0].levelno == logging.INFO
    # An hour later the remaining ones are logged again, with their count.
    clock.now += 3601
    later = cycle(subjects[5:])
    assert later[0].getMessage() == (
        "thing p5 not read: provider_rejected (and 3 times in the last hour)"
    )
    assert len(later) == 4  # three lines and one summary, not five


# --- the poll and payout sweeps against the sandbox ------------------------------------------


def _create(n: int) -> list[Any]:
    from tests.factories import UserFactory

    user = UserFactory()
    return [
        service.payment_create(
            user_id=user.pk, amount_usd=Decimal("20.00"), currency_code="USDTTRC20"
        )
        for _ in range(n)
    ]


@pytest.mark.django_db(transaction=True)
def test_a_poll_refused_every_cycle_logs_a_handful_of_lines_then_one_when_it_recovers(
    sandbox: Any, usdt: Any, settings: Any, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    # A limiter of this test's own: the sandbox reuses provider ids from test to test.
    monkeypatch.setattr(poll, "REPEATS", RepeatLimiter())
    settings.NOWPAYMENTS_PASSWORD = ""  # no JWT: every payment is asked for on its own
    created = _create(8)
    # NowPayments answers garbage for every one of them, two cycles long.
    sandbox.control.set_fault("malformed_json", count=16, path="/v1/payment/")
    caplog.set_level(logging.INFO, logger=POLL_LOGGER)

    first = poll.payments_poll()
    assert first.errors == 8
    lines = _lines(caplog, POLL_LOGGER)
    assert len(lines) == 4, lines  # three payments by id, one line for the five others
    ids = {payment.provider_payment_id for payment in created}
    assert {line.split()[4] for line in lines[:3]} <= ids
    assert lines[3].startswith("provider payment status not read: 5 more (provider_unavailable)")

    caplog.clear()
    second = poll.payments_poll()
    assert second.errors == 8
    ours = [r.getMessage() for r in caplog.records if r.name == POLL_LOGGER]
    assert ours == [f"poll: {second.as_dict()}"]  # the cycle's summary, nothing else

    caplog.clear()
    third = poll.payments_poll()  # the faults are used up: NowPayments answers again
    assert third.errors == 0
    assert third.status_calls == 8
    assert _lines(caplog, POLL_LOGGER) == []
    ours = [r.getMessage() for r in caplog.records if r.name == POLL_LOGGER]
    assert ours == [
        "provider payment status not read: 8 recovered (8 repeated failures were not logged)",
        f"poll: {third.as_dict()}",
    ]
    assert poll.REPEATS.active("provider payment status not read") == 0


@pytest.mark.django_db(transaction=True)
def test_a_payout_unread_every_sweep_is_logged_once(
    sandbox: Any, usdt: Any, settings: Any, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    from django.contrib.auth.models import Permission

    from payments import ledger
    from payments.services import withdrawals

    # Every sweep reads the payout again (no per-item backoff), so that the log is what repeats.
    settings.PAYMENTS_ITEM_RETRY_SECONDS = 0
    settings.PAYMENTS_ITEM_RETRY_MAX_SECONDS = 0
    from tests.factories import UserFactory

    monkeypatch.setattr(payouts, "REPEATS", RepeatLimiter())
    settings.PAYMENTS_PAYOUTS_ENABLED = True
    sandbox.control.set_balance("usdttrc20", "100000")
    reviewer = UserFactory(is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    sent = []
    for n in range(5):
        user = UserFactory()
        ledger.post(
            user_id=user.pk, kind="deposit", amount_usd=Decimal("100.00"), idempotency_key=f"d{n}"
        )
        withdrawal = withdrawals.withdrawal_create(
            user_id=user.pk,
            amount_usd=Decimal("51.50"),
            currency_id=usdt.pk,
            wallet_address="TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE",
            network_fee_usd=Decimal("1.00"),
            service_fee_usd=Decimal("0.50"),
        )
        withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=reviewer)
        sent.append(payouts.withdrawal_payout_send(withdrawal_id=withdrawal.pk))
    assert all(w.status == "processing" and w.provider_batch_id for w in sent)
    sandbox.control.reset()  # NowPayments no longer knows these payouts: refused every sweep
    caplog.set_level(logging.INFO, logger=payouts.__name__)

    first = payouts.payouts_poll()
    assert first.errors == 5
    lines = _lines(caplog, payouts.__name__)
    assert len(lines) == 4, lines  # three withdrawals by id, one line for the other two
    assert lines[0] == f"payout of withdrawal {sent[0].pk} not read: provider_rejected"
    assert lines[3].startswith("payout not read: 2 more (provider_rejected)")
    caplog.clear()
    assert payouts.payouts_poll().errors == 5
    assert payouts.payouts_poll().errors == 5
    assert _lines(caplog, payouts.__name__) == []


# --- the filters settings.py installs -----------------------------------------------------


def _filter_of(logger_name: str) -> RepeatFilter:
    found = [f for f in logging.getLogger(logger_name).filters if isinstance(f, RepeatFilter)]
    assert len(found) == 1, f"settings.LOGGING puts one RepeatFilter on {logger_name}"
    found[0].limiter = RepeatLimiter()  # a fresh memory: other tests retried requests too
    return found[0]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.django_db
def test_nowpayments_down_its_retry_warning_is_logged_once_an_hour(
    sandbox: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from payments.errors import ProviderUnavailable
    from payments.services.providers.nowpayments.gateway import get_provider

    _filter_of(TRANSPORT_LOGGER)
    settings.NOWPAYMENTS_API_URL = f"http://127.0.0.1:{_closed_port()}/v1"
    caplog.set_level(logging.INFO)
    provider = get_provider()
    for payment_id in ("4861859780", "4861859781"):
        with pytest.raises(ProviderUnavailable):
            provider.get_payment_status(payment_id)
    # Two reads, three retries each: one line, the first.
    lines = _lines(caplog, TRANSPORT_LOGGER)
    assert len(lines) == 1, lines
    assert lines[0].startswith("nowpayments GET /payment/4861859780 failed (ConnectionError)")


def test_the_filters_pass_everything_else_and_show_repeats_where_debug_is_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    retries = _filter_of(TRANSPORT_LOGGER)
    template = retries.template
    logger = logging.getLogger(TRANSPORT_LOGGER)
    caplog.set_level(logging.INFO)
    for _ in range(3):
        logger.warning(template, "POST", "/payout", "HTTP 500", 1, 3, 0.5)
        logger.warning("nowpayments something else went wrong")
    messages = [r.getMessage() for r in caplog.records if r.name == TRANSPORT_LOGGER]
    assert messages == [
        "nowpayments POST /payout failed (HTTP 500); retry 1/3 in 0.50 s",
        *["nowpayments something else went wrong"] * 3,
    ]
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger=TRANSPORT_LOGGER)
    logger.warning(template, "POST", "/payout", "HTTP 500", 2, 3, 1.0)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "nowpayments POST /payout failed (HTTP 500); retry 2/3 in 1.00 s")
    ]

    expired = _filter_of("celery.app.base")
    celery_logger = logging.getLogger("celery.app.base")
    caplog.clear()
    caplog.set_level(logging.INFO)
    for task_id in ("a1", "b2", "c3"):
        celery_logger.warning(f"{task_id} has an expiration date in the past (0.5s ago).\n...")
    assert len([r for r in caplog.records if r.name == "celery.app.base"]) == 1
    assert expired.limiter.active("has an expiration date in the past") == 1
