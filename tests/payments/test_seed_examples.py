"""The seed's model examples, run as written (module `payments`), print what it says."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError

from tests.factories import CurrencyFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return UserFactory(username="alice")


@pytest.fixture
def admin_user():
    admin = UserFactory(username="operator", is_staff=True)
    admin.user_permissions.add(Permission.objects.get(codename="approve_withdrawalrequest"))
    return admin


@pytest.fixture
def usdt():
    return CurrencyFactory(code="USDTTRC20", token="USDT", network="TRC20")


def run(source: str, namespace: dict) -> list[str]:
    """Execute a seed snippet, collecting what its print() calls print."""
    printed: list[str] = []
    namespace["print"] = lambda *args: printed.append(" ".join(str(a) for a in args))
    exec(source, namespace)  # noqa: S102 - the seed's own examples, verbatim
    return printed


@pytest.mark.django_db(transaction=True)
def test_payment_example(sandbox, user, usdt):
    printed = run(
        """
from payments.models import Payment, Currency
from decimal import Decimal
from django.utils import timezone
# Create a payment
payment = Payment.objects.create(
    user=user,
    amount_usd=Decimal('99.99'),
    currency=Currency.objects.get(code='USDTTRC20'),
    description='Premium subscription deposit'
)
# Access payment properties
print(payment.internal_payment_id)  # PAY_20250114123456_abc12345
print(payment.status)  # 'pending'
print(payment.amount_display)  # '$99.99 USD'
print(payment.is_pending)  # True
print(payment.qr_data)  # Payment address for QR code
print(payment.get_explorer_link())  # Blockchain explorer URL
# Update status manually
payment.status = Payment.PaymentStatus.COMPLETED
payment.completed_at = timezone.now()
payment.save()
""",
        {"user": user},
    )
    assert re.fullmatch(r"PAY_\d{14}_[0-9a-f]{8}", printed[0])
    assert printed[1:4] == ["pending", "$99.99 USD", "True"]
    # Registered with NowPayments before create() returned: the address is there at once (a
    # TRC20 token has no payment URI: the bare address); no hash before the chain has one.
    from payments.models import Payment

    payment = Payment.objects.get()
    remote = sandbox.control.payment(payment.provider_payment_id)
    assert printed[4] == payment.pay_address == remote["pay_address"] != ""
    assert printed[5] == "None"
    assert payment.status == "completed"
    assert payment.provider_payment_id == str(remote["payment_id"])


def test_payment_address_qr_and_explorer(user, usdt):
    from payments.models import Payment

    payment = Payment.objects.create(user=user, amount_usd=Decimal("10.00"), currency=usdt)
    payment.pay_address = "TAddr123"
    payment.transaction_hash = "abc"
    assert payment.qr_data == "TAddr123"
    assert payment.get_explorer_link() == "https://tronscan.org/#/transaction/abc"
    # Our own endpoint: the address is not in the URL, and no third party sees it.
    assert payment.get_qr_code_url(size=300) == f"/payments/qr/{payment.pk}.png?size=300"
    assert "TAddr123" not in payment.get_qr_code_url(size=300)
    assert payment.status_color == "warning"
    usdt.explorer_tx_url = "https://explorer.example/tx/:hash"
    assert payment.get_explorer_link() == "https://explorer.example/tx/abc"


def test_payment_status_only_moves_forward(user, usdt):
    from payments.models import Payment

    payment = Payment.objects.create(user=user, amount_usd=Decimal("10.00"), currency=usdt)
    payment.status = Payment.PaymentStatus.CONFIRMING
    payment.save()
    assert payment.status_changed_at is not None
    payment.status = Payment.PaymentStatus.PENDING
    with pytest.raises(ValidationError):
        payment.save()
    payment.refresh_from_db()
    assert payment.status == "confirming"


def test_currency_example(usdt):
    printed = run(
        """
from payments.models import Currency
# Get active currencies
currencies = Currency.objects.filter(is_active=True)
# Get specific currency
usdt = Currency.objects.get(code='USDTTRC20')
print(usdt.display_name)  # "USDT (TRC20)"
print(usdt.token)  # "USDT"
print(usdt.network)  # "TRC20"
print(repr(usdt.min_amount_usd))  # Decimal('1.00')
# Check currency properties
print(usdt.is_active)  # True
print(usdt.provider)  # 'nowpayments'
""",
        {},
    )
    assert printed == ["USDT (TRC20)", "USDT", "TRC20", "Decimal('1.00')", "True", "nowpayments"]


def test_user_balance_example(user, usdt, admin_user):
    from payments import ledger

    ledger.post(
        user_id=user.pk,
        kind="deposit",
        amount_usd=Decimal("250.00"),
        idempotency_key="seed:deposit",
    )
    ledger.post(
        user_id=user.pk,
        kind="withdrawal",
        amount_usd=Decimal("-50.00"),
        idempotency_key="seed:withdrawal",
    )
    ledger.post(
        user_id=user.pk, kind="fee", amount_usd=Decimal("-0.01"), idempotency_key="seed:fee"
    )
    printed = run(
        """
from payments.models import UserBalance
# Get or create user balance
balance = UserBalance.objects.get_or_create_for_user(user)
# Access balance information
print(balance.balance_display)  # '$199.99 USD'
print(repr(balance.balance_usd))  # Decimal('199.99')
print(repr(balance.total_deposited))  # Decimal('250.00')
print(repr(balance.total_withdrawn))  # Decimal('50.00')
print(balance.last_transaction_at)  # datetime
# Balance properties
print(balance.is_empty)  # False
print(balance.has_transactions)  # True
""",
        {"user": user},
    )
    assert printed[:4] == [
        "$199.99 USD",
        "Decimal('199.99')",
        "Decimal('250.00')",
        "Decimal('50.00')",
    ]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", printed[4])
    assert printed[5:] == ["False", "True"]


def test_user_balance_for_new_user_is_empty(user):
    from payments.models import UserBalance

    balance = UserBalance.objects.get_or_create_for_user(user)
    assert isinstance(balance, UserBalance)
    assert balance.is_empty
    assert not balance.has_transactions
    assert UserBalance.objects.get_or_create_for_user(user).pk == balance.pk


def test_transaction_example(user):
    from payments import ledger

    ledger.post(
        user_id=user.pk, kind="deposit", amount_usd=Decimal("100.00"), idempotency_key="before"
    )
    printed = run(
        """
from payments.models import Transaction
from decimal import Decimal
# Create a transaction (typically done automatically by payment system)
transaction = Transaction.objects.create(
    user=user,
    transaction_type=Transaction.TransactionType.DEPOSIT,
    amount_usd=Decimal('99.99'),  # Positive for credit
    balance_after=Decimal('199.99'),
    description='Payment completed - PAY_20250114_abc'
)
# Query transactions
transactions = Transaction.objects.filter(user=user).order_by('-created_at')
# Transaction properties
print(transaction.is_credit)  # True (amount > 0)
print(transaction.is_debit)  # False
print(transaction.amount_display)  # '+$99.99'
print(transaction.type_color)  # 'success' (for UI display)
# Transactions are IMMUTABLE - cannot be modified
# Attempting to modify will raise ValidationError
""",
        {"user": user},
    )
    assert printed == ["True", "False", "+$99.99", "success"]
    from payments.models import Transaction, UserBalance

    txn = Transaction.objects.get(description="Payment completed - PAY_20250114_abc")
    assert txn.sequence == 2
    assert UserBalance.objects.get(user=user).balance_usd == Decimal("199.99")
    txn.amount_usd = Decimal("1000.00")
    with pytest.raises(ValidationError):
        txn.save()
    with pytest.raises(ValidationError):
        txn.delete()
    with pytest.raises(ValidationError):
        Transaction.objects.filter(pk=txn.pk).update(amount_usd=Decimal("1.00"))
    with pytest.raises(ValidationError):
        Transaction.objects.filter(pk=txn.pk).delete()
    txn.refresh_from_db()
    assert txn.amount_usd == Decimal("99.99")


def test_transaction_debit_display(user):
    from payments import ledger

    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("60.00"), idempotency_key="a")
    txn = ledger.post(
        user_id=user.pk, kind="withdrawal", amount_usd=Decimal("-50.00"), idempotency_key="b"
    )
    assert (txn.is_credit, txn.is_debit, txn.amount_display) == (False, True, "-$50.00")
    assert txn.type_color == "danger"


def test_withdrawal_example(user, usdt, admin_user):
    from payments import ledger

    ledger.post(user_id=user.pk, kind="deposit", amount_usd=Decimal("80.00"), idempotency_key="d")
    printed = run(
        """
from payments.models import WithdrawalRequest, Currency
from decimal import Decimal
from django.utils import timezone
# User creates withdrawal request
withdrawal = WithdrawalRequest.objects.create(
    user=user,
    amount_usd=Decimal('50.00'),
    currency=Currency.objects.get(code='USDTTRC20'),
    wallet_address='TExampleAddress123...',
    network_fee_usd=Decimal('1.00'),
    service_fee_usd=Decimal('0.50')
)
# Check withdrawal status
print(withdrawal.status)  # 'pending'
print(withdrawal.is_pending)  # True
print(withdrawal.can_be_cancelled)  # True
print(withdrawal.amount_display)  # '$50.00 USD'
print(repr(withdrawal.final_amount_usd))  # Decimal('48.50') after fees
# Admin approves withdrawal
withdrawal.status = WithdrawalRequest.Status.APPROVED
withdrawal.approved_at = timezone.now()
withdrawal.admin_user = admin_user
withdrawal.save()
# After processing, mark completed
withdrawal.status = WithdrawalRequest.Status.COMPLETED
withdrawal.transaction_hash = 'blockchain_tx_hash'
withdrawal.completed_at = timezone.now()
withdrawal.save()
""",
        {"user": user, "admin_user": admin_user},
    )
    assert printed == ["pending", "True", "True", "$50.00 USD", "Decimal('48.50')"]
    from payments.models import UserBalance, WithdrawalRequest

    withdrawal = WithdrawalRequest.objects.get()
    assert re.fullmatch(r"WD_\d{14}_[0-9a-f]{8}", withdrawal.internal_withdrawal_id)
    assert withdrawal.status == "completed"
    assert withdrawal.total_fee_usd == Decimal("1.50")
    balance = UserBalance.objects.get(user=user)
    assert balance.balance_usd == Decimal("30.00")
    assert balance.total_withdrawn == Decimal("50.00")
