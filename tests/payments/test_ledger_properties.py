"""Random sequences of ledger operations keep every invariant after every step."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from payments import ledger
from payments.errors import IdempotencyConflict, InsufficientFunds, InvalidTransition
from payments.models import Transaction, UserBalance, WithdrawalRequest
from payments.services import withdrawals
from tests.factories import CurrencyFactory, UserFactory
from tests.payments.test_ledger_concurrency import assert_ledger_consistent

pytestmark = pytest.mark.django_db(transaction=True)

amounts = st.integers(min_value=1, max_value=500_000).map(lambda cents: Decimal(cents) / 100)

EXAMPLES = 40
STEPS = 25


class LedgerMachine(RuleBasedStateMachine):
    """A model of one user's account, compared with the database after each step."""

    posted = Bundle("posted")
    held = Bundle("held")

    def __init__(self) -> None:
        super().__init__()
        self.user = UserFactory()
        self.reviewer = UserFactory(is_staff=True)
        self.reviewer.user_permissions.add(
            Permission.objects.get(codename="approve_withdrawalrequest")
        )
        self.currency = CurrencyFactory()
        self.expected = Decimal("0.00")
        self.count = 0
        self.keys: dict[str, tuple[str, Decimal]] = {}
        self.serial = 0

    def _key(self) -> str:
        self.serial += 1
        return f"{self.user.pk}:{self.serial}"

    @rule(target=posted, amount=amounts)
    def deposit(self, amount: Decimal) -> str:
        key = self._key()
        ledger.post(user_id=self.user.pk, kind="deposit", amount_usd=amount, idempotency_key=key)
        self.expected += amount
        self.count += 1
        self.keys[key] = ("deposit", amount)
        return key

    @rule(target=posted, amount=amounts, kind=st.sampled_from(["payment", "fee"]))
    def debit(self, amount: Decimal, kind: str) -> str:
        key = self._key()
        try:
            ledger.post(user_id=self.user.pk, kind=kind, amount_usd=-amount, idempotency_key=key)
        except InsufficientFunds:
            assert amount > self.expected
            assert not Transaction.objects.filter(idempotency_key=key).exists()
            return key
        assert amount <= self.expected
        self.expected -= amount
        self.count += 1
        self.keys[key] = (kind, -amount)
        return key

    @rule(
        parts=st.lists(
            st.tuples(st.sampled_from(["deposit", "fee", "bonus", "payment"]), amounts),
            min_size=1,
            max_size=4,
        )
    )
    def batch(self, parts: list[tuple[str, Decimal]]) -> None:
        postings = []
        running, lowest = self.expected, self.expected
        for kind, amount in parts:
            signed = amount if kind in ("deposit", "bonus") else -amount
            running += signed
            lowest = min(lowest, running)
            postings.append(
                ledger.Posting(
                    user_id=self.user.pk,
                    kind=kind,
                    amount_usd=signed,
                    idempotency_key=self._key(),
                )
            )
        try:
            ledger.post_many(postings)
        except InsufficientFunds:
            assert lowest < 0, "a batch that never goes negative must be accepted"
            assert not Transaction.objects.filter(
                idempotency_key__in=[p.idempotency_key for p in postings]
            ).exists()
            return
        assert lowest >= 0
        self.expected = running
        self.count += len(postings)
        for p in postings:
            self.keys[p.idempotency_key] = (p.kind, p.amount_usd)

    @rule(key=posted)
    def replay(self, key: str) -> None:
        if key not in self.keys:
            return
        kind, amount = self.keys[key]
        ledger.post(user_id=self.user.pk, kind=kind, amount_usd=amount, idempotency_key=key)

    @rule(key=posted, delta=st.sampled_from([Decimal("0.01"), Decimal("-0.01")]))
    def replay_with_other_amount(self, key: str, delta: Decimal) -> None:
        if key not in self.keys:
            return
        kind, amount = self.keys[key]
        if amount + delta == 0:
            return
        with pytest.raises(IdempotencyConflict):
            ledger.post(
                user_id=self.user.pk, kind=kind, amount_usd=amount + delta, idempotency_key=key
            )

    @rule(target=held, amount=amounts)
    def request_withdrawal(self, amount: Decimal) -> str:
        try:
            withdrawal = withdrawals.withdrawal_create(
                user_id=self.user.pk,
                amount_usd=amount + Decimal("0.01"),
                currency_id=self.currency.pk,
                wallet_address="TWallet",
                network_fee_usd=Decimal("0.01"),
            )
        except InsufficientFunds:
            assert amount + Decimal("0.01") > self.expected
            return ""
        self.expected -= withdrawal.amount_usd
        self.count += 1
        return str(withdrawal.pk)

    @rule(withdrawal_id=consumes(held), how=st.sampled_from(["reject", "cancel", "complete"]))
    def finish_withdrawal(self, withdrawal_id: str, how: str) -> None:
        if not withdrawal_id:
            return
        withdrawal = WithdrawalRequest.objects.get(pk=withdrawal_id)
        if how == "reject":
            withdrawals.withdrawal_reject(withdrawal_id=withdrawal.pk, admin_user=self.reviewer)
        elif how == "cancel":
            withdrawals.withdrawal_cancel(withdrawal_id=withdrawal.pk, user=self.user)
        else:
            withdrawals.withdrawal_approve(withdrawal_id=withdrawal.pk, admin_user=self.reviewer)
            withdrawals.withdrawal_start_processing(withdrawal_id=withdrawal.pk)
            withdrawals.withdrawal_complete(withdrawal_id=withdrawal.pk, transaction_hash="0xabc")
            # A finished withdrawal cannot be refunded afterwards.
            with pytest.raises(InvalidTransition):
                withdrawals.withdrawal_fail(withdrawal_id=withdrawal.pk, reason="late")
            return
        self.expected += withdrawal.amount_usd
        self.count += 1
        # A second refund attempt changes nothing.
        with pytest.raises(InvalidTransition):
            withdrawals.withdrawal_cancel(withdrawal_id=withdrawal.pk, user=self.user)

    @invariant()
    def matches_the_model(self) -> None:
        balance = UserBalance.objects.filter(user=self.user).first()
        if balance is None:
            assert self.count == 0
            return
        assert balance.balance_usd == self.expected
        assert balance.transaction_count == self.count
        assert_ledger_consistent(self.user.pk)


def test_random_operation_sequences_keep_the_invariants():
    LedgerMachine.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    runner = LedgerMachine.TestCase()
    runner.runTest()
