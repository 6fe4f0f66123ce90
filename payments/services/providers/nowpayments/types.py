"""Typed, immutable NowPayments results: Decimal amounts, str ids, aware datetimes, raw kept."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from payments.services.providers.nowpayments import parsing as p
from payments.services.providers.nowpayments.statuses import (
    FINAL_PAYMENT_STATUSES,
    FINAL_PAYOUT_STATUSES,
)

_MISSING = object()


class _ReadsLikeTheProviderDict:
    """``result["field"]`` / ``result.get("field")`` by the provider's field name.

    A typed attribute of that name wins (so ``payment["actually_paid"]`` is a Decimal); any
    other key is read from ``raw``, the provider's body as received.
    """

    raw: Mapping[str, Any]

    def _typed(self, key: str) -> Any:
        if key != "raw" and key in _field_names(type(self)):
            return getattr(self, key)
        return _MISSING

    def __getitem__(self, key: str) -> Any:
        value = self._typed(key)
        if value is not _MISSING:
            return value
        return self.raw[key]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return key in self.raw or self._typed(key) not in (_MISSING, None)

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        return default


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    return names


def _raw() -> Any:
    return field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ApiStatus(_ReadsLikeTheProviderDict):
    message: str
    raw: Mapping[str, Any] = _raw()

    @property
    def ok(self) -> bool:
        return self.message.strip().upper() == "OK"


@dataclass(frozen=True)
class FullCurrency(_ReadsLikeTheProviderDict):
    """One entry of ``/full-currencies``; ``code`` is upper-case as the API sends it."""

    code: str
    name: str
    enable: bool
    id: int | None = None
    network: str | None = None
    ticker: str | None = None
    wallet_regex: str | None = None
    extra_id_exists: bool = False
    extra_id_regex: str | None = None
    priority: int | None = None
    precision: int | None = None
    network_precision: int | None = None
    smart_contract: str | None = None
    logo_url: str | None = None
    cg_id: str | None = None
    explorer_link_hash: str | None = None
    is_maxlimit: bool | None = None
    is_stable: bool | None = None
    is_popular: bool | None = None
    available_for_payment: bool | None = None
    available_for_payout: bool | None = None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FullCurrency:
        data = p.as_mapping(data, what="a currency")
        code = p.str_or_none(data.get("code"))
        if not code:
            raise p.MalformedResponse("NowPayments sent a currency without a code.")
        return cls(
            code=code.strip().upper(),
            name=p.str_or_none(data.get("name")) or code,
            enable=bool(p.bool_or_none(data.get("enable"))),
            id=p.int_or_none(data.get("id")),
            network=p.lower_or_none(data.get("network")),
            ticker=p.lower_or_none(data.get("ticker")),
            wallet_regex=p.str_or_none(data.get("wallet_regex")),
            extra_id_exists=bool(p.bool_or_none(data.get("extra_id_exists"))),
            extra_id_regex=p.str_or_none(data.get("extra_id_regex")),
            priority=p.int_or_none(data.get("priority")),
            precision=p.int_or_none(data.get("precision")),
            network_precision=p.int_or_none(data.get("network_precision")),
            smart_contract=p.str_or_none(data.get("smart_contract")) or None,
            logo_url=p.str_or_none(data.get("logo_url")),
            cg_id=p.str_or_none(data.get("cg_id")),
            explorer_link_hash=p.str_or_none(data.get("explorer_link_hash")) or None,
            is_maxlimit=p.bool_or_none(data.get("is_maxlimit")),
            is_stable=p.bool_or_none(data.get("is_stable")),
            is_popular=p.bool_or_none(data.get("is_popular")),
            available_for_payment=p.bool_or_none(data.get("available_for_payment")),
            available_for_payout=p.bool_or_none(data.get("available_for_payout")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class MinAmount(_ReadsLikeTheProviderDict):
    currency_from: str
    currency_to: str | None
    min_amount: Decimal
    fiat_equivalent: Decimal | None = None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MinAmount:
        data = p.as_mapping(data, what="a minimum amount")
        return cls(
            currency_from=p.lower_or_none(data.get("currency_from")) or "",
            currency_to=p.lower_or_none(data.get("currency_to")),
            min_amount=p.decimal_required(data.get("min_amount"), name="min_amount"),
            fiat_equivalent=p.decimal_or_none(data.get("fiat_equivalent"), name="fiat_equivalent"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Estimate(_ReadsLikeTheProviderDict):
    currency_from: str
    amount_from: Decimal
    currency_to: str
    estimated_amount: Decimal
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        data = p.as_mapping(data, what="an estimate")
        return cls(
            currency_from=p.lower_or_none(data.get("currency_from")) or "",
            amount_from=p.decimal_required(data.get("amount_from"), name="amount_from"),
            currency_to=p.lower_or_none(data.get("currency_to")) or "",
            estimated_amount=p.decimal_required(
                data.get("estimated_amount"), name="estimated_amount"
            ),
            raw=dict(data),
        )


@dataclass(frozen=True)
class PayoutFee(_ReadsLikeTheProviderDict):
    """``GET /payout/fee``: the network fee of a payout, in units of ``currency``."""

    currency: str
    fee: Decimal
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, currency: str) -> PayoutFee:
        data = p.as_mapping(data, what="a payout fee")
        fee = p.decimal_required(data.get("fee"), name="fee")
        if fee < 0:
            raise p.MalformedResponse("NowPayments sent a negative payout fee.")
        return cls(
            currency=p.lower_or_none(data.get("currency")) or currency.strip().lower(),
            fee=fee,
            raw=dict(data),
        )


@dataclass(frozen=True)
class PayoutMinAmount(_ReadsLikeTheProviderDict):
    """``GET /payout-withdrawal/min-amount/{coin}``: the smallest payout, in coin units."""

    currency: str
    min_amount: Decimal
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, currency: str) -> PayoutMinAmount:
        data = p.as_mapping(data, what="a payout minimum")
        if p.bool_or_none(data.get("success")) is False:
            raise p.MalformedResponse("NowPayments' payout minimum answer says it failed.")
        minimum = p.decimal_required(data.get("result"), name="the payout minimum")
        if minimum < 0:
            raise p.MalformedResponse("NowPayments sent a negative payout minimum.")
        return cls(currency=currency.strip().lower(), min_amount=minimum, raw=dict(data))


@dataclass(frozen=True)
class PaymentFee(_ReadsLikeTheProviderDict):
    """The ``fee`` object of a payment IPN (camelCase inside, as the API sends it)."""

    currency: str | None
    deposit_fee: Decimal | None
    withdrawal_fee: Decimal | None
    service_fee: Decimal | None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaymentFee:
        return cls(
            currency=p.lower_or_none(data.get("currency")),
            deposit_fee=p.decimal_or_none(p.first(data, "depositFee", "deposit_fee")),
            withdrawal_fee=p.decimal_or_none(p.first(data, "withdrawalFee", "withdrawal_fee")),
            service_fee=p.decimal_or_none(p.first(data, "serviceFee", "service_fee")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class ProviderPayment(_ReadsLikeTheProviderDict):
    """A NowPayments payment (create, status, list and IPN bodies all parse into this).

    ``payment_status`` is the provider's status lower-cased (deposits.statuses maps it onto ours).
    Subscripting reads by the provider's field name: ``payment["actually_paid"]``.
    """

    payment_id: str
    payment_status: str
    pay_address: str | None = None
    payin_extra_id: str | None = None
    price_amount: Decimal | None = None
    price_currency: str | None = None
    pay_amount: Decimal | None = None
    pay_currency: str | None = None
    actually_paid: Decimal | None = None
    actually_paid_at_fiat: Decimal | None = None
    amount_received: Decimal | None = None
    outcome_amount: Decimal | None = None
    outcome_currency: str | None = None
    order_id: str | None = None
    order_description: str | None = None
    purchase_id: str | None = None
    invoice_id: str | None = None
    parent_payment_id: str | None = None
    origin_type: str | None = None
    payment_extra_ids: tuple[str, ...] = ()
    payin_hash: str | None = None
    payout_hash: str | None = None
    network: str | None = None
    network_precision: int | None = None
    smart_contract: str | None = None
    burning_percent: Decimal | None = None
    is_fixed_rate: bool | None = None
    is_fee_paid_by_user: bool | None = None
    type: str | None = None
    ipn_callback_url: str | None = None
    fee: PaymentFee | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    expiration_estimate_date: datetime | None = None
    valid_until: datetime | None = None
    raw: Mapping[str, Any] = _raw()

    @property
    def is_final(self) -> bool:
        return self.payment_status in FINAL_PAYMENT_STATUSES

    @property
    def is_redeposit(self) -> bool:
        return self.parent_payment_id is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProviderPayment:
        data = p.as_mapping(data, what="a payment")
        fee = data.get("fee")
        return cls(
            payment_id=p.id_required(p.first(data, "payment_id", "id"), name="payment_id"),
            payment_status=p.lower_or_none(data.get("payment_status")) or "",
            pay_address=p.str_or_none(data.get("pay_address")),
            payin_extra_id=p.id_or_none(data.get("payin_extra_id")),
            price_amount=p.decimal_or_none(data.get("price_amount"), name="price_amount"),
            price_currency=p.lower_or_none(data.get("price_currency")),
            pay_amount=p.decimal_or_none(data.get("pay_amount"), name="pay_amount"),
            pay_currency=p.lower_or_none(data.get("pay_currency")),
            actually_paid=p.decimal_or_none(data.get("actually_paid"), name="actually_paid"),
            actually_paid_at_fiat=p.decimal_or_none(
                data.get("actually_paid_at_fiat"), name="actually_paid_at_fiat"
            ),
            amount_received=p.decimal_or_none(data.get("amount_received"), name="amount_received"),
            outcome_amount=p.decimal_or_none(data.get("outcome_amount"), name="outcome_amount"),
            outcome_currency=p.lower_or_none(data.get("outcome_currency")),
            order_id=p.str_or_none(data.get("order_id")),
            order_description=p.str_or_none(data.get("order_description")),
            purchase_id=p.id_or_none(data.get("purchase_id")),
            invoice_id=p.id_or_none(data.get("invoice_id")),
            parent_payment_id=p.id_or_none(data.get("parent_payment_id")),
            origin_type=p.str_or_none(data.get("origin_type")),
            payment_extra_ids=_id_tuple(data.get("payment_extra_ids")),
            payin_hash=p.str_or_none(data.get("payin_hash")),
            payout_hash=p.str_or_none(data.get("payout_hash")),
            network=p.lower_or_none(data.get("network")),
            network_precision=p.int_or_none(data.get("network_precision")),
            smart_contract=p.str_or_none(data.get("smart_contract")) or None,
            burning_percent=p.decimal_or_none(data.get("burning_percent"), name="burning_percent"),
            is_fixed_rate=p.bool_or_none(p.first(data, "is_fixed_rate", "fixed_rate")),
            is_fee_paid_by_user=p.bool_or_none(data.get("is_fee_paid_by_user")),
            type=p.str_or_none(data.get("type")),
            ipn_callback_url=p.str_or_none(data.get("ipn_callback_url")),
            fee=PaymentFee.from_dict(fee) if isinstance(fee, Mapping) else None,
            created_at=p.datetime_or_none(p.first(data, "created_at", "createdAt")),
            updated_at=p.datetime_or_none(p.first(data, "updated_at", "updatedAt")),
            expiration_estimate_date=p.datetime_or_none(data.get("expiration_estimate_date")),
            valid_until=p.datetime_or_none(data.get("valid_until")),
            raw=dict(data),
        )


def _id_tuple(value: Any) -> tuple[str, ...]:
    """Ids from an array, or from the ``{"0": id, ...}`` object the docs' Node signer makes."""
    if isinstance(value, Mapping):
        value = [value[k] for k in sorted(value, key=lambda k: (len(str(k)), str(k)))]
    if not isinstance(value, list):
        return ()
    return tuple(i for i in (p.id_or_none(x) for x in value) if i)


@dataclass(frozen=True)
class PaymentPage(_ReadsLikeTheProviderDict):
    data: tuple[ProviderPayment, ...]
    limit: int
    page: int
    pages_count: int | None
    total: int | None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, body: Mapping[str, Any], *, limit: int, page: int) -> PaymentPage:
        body = p.as_mapping(body, what="a page of payments")
        rows = p.as_list(body.get("data", []), what="the payments list")
        page_sent = p.int_or_none(body.get("page"))
        return cls(
            data=tuple(ProviderPayment.from_dict(row) for row in rows),
            limit=p.int_or_none(body.get("limit")) or limit,
            page=page if page_sent is None else page_sent,
            pages_count=p.int_or_none(p.first(body, "pagesCount", "pages_count")),
            total=p.int_or_none(body.get("total")),
            raw=dict(body),
        )

    @property
    def has_next(self) -> bool:
        if self.pages_count is not None:
            return self.page + 1 < self.pages_count
        return len(self.data) >= self.limit > 0


@dataclass(frozen=True)
class Invoice(_ReadsLikeTheProviderDict):
    id: str
    invoice_url: str | None
    price_amount: Decimal | None
    price_currency: str | None
    pay_currency: str | None = None
    order_id: str | None = None
    order_description: str | None = None
    token_id: str | None = None
    ipn_callback_url: str | None = None
    success_url: str | None = None
    cancel_url: str | None = None
    partially_paid_url: str | None = None
    payout_currency: str | None = None
    is_fixed_rate: bool | None = None
    is_fee_paid_by_user: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Invoice:
        data = p.as_mapping(data, what="an invoice")
        return cls(
            id=p.id_required(p.first(data, "id", "invoice_id"), name="invoice id"),
            invoice_url=p.str_or_none(data.get("invoice_url")),
            price_amount=p.decimal_or_none(data.get("price_amount"), name="price_amount"),
            price_currency=p.lower_or_none(data.get("price_currency")),
            pay_currency=p.lower_or_none(data.get("pay_currency")),
            order_id=p.str_or_none(data.get("order_id")),
            order_description=p.str_or_none(data.get("order_description")),
            token_id=p.id_or_none(data.get("token_id")),
            ipn_callback_url=p.str_or_none(data.get("ipn_callback_url")),
            success_url=p.str_or_none(data.get("success_url")),
            cancel_url=p.str_or_none(data.get("cancel_url")),
            partially_paid_url=p.str_or_none(data.get("partially_paid_url")),
            payout_currency=p.lower_or_none(data.get("payout_currency")),
            is_fixed_rate=p.bool_or_none(data.get("is_fixed_rate")),
            is_fee_paid_by_user=p.bool_or_none(data.get("is_fee_paid_by_user")),
            created_at=p.datetime_or_none(p.first(data, "created_at", "createdAt")),
            updated_at=p.datetime_or_none(p.first(data, "updated_at", "updatedAt")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Balance(_ReadsLikeTheProviderDict):
    currency: str
    amount: Decimal
    pending_amount: Decimal
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, currency: str, data: Mapping[str, Any]) -> Balance:
        data = p.as_mapping(data, what="a balance")
        return cls(
            currency=currency.strip().lower(),
            amount=p.decimal_or_none(data.get("amount"), name="amount") or Decimal(0),
            pending_amount=p.decimal_or_none(
                p.first(data, "pendingAmount", "pending_amount"), name="pendingAmount"
            )
            or Decimal(0),
            raw=dict(data),
        )


@dataclass(frozen=True)
class PayoutRequest:
    """One withdrawal to send in a payout batch (input to ``create_payout``)."""

    address: str
    currency: str
    amount: Decimal
    extra_id: str | None = None
    ipn_callback_url: str | None = None
    unique_external_id: str | None = None


@dataclass(frozen=True)
class PayoutWithdrawal(_ReadsLikeTheProviderDict):
    """One withdrawal of a payout. ``status`` is upper-case (``WAITING``, ``FINISHED``...)."""

    id: str
    status: str
    address: str | None
    currency: str | None
    amount: Decimal | None
    batch_withdrawal_id: str | None = None
    extra_id: str | None = None
    hash: str | None = None
    error: str | None = None
    fee: Decimal | None = None
    is_request_payouts: bool | None = None
    ipn_callback_url: str | None = None
    unique_external_id: str | None = None
    payout_description: str | None = None
    created_at: datetime | None = None
    requested_at: datetime | None = None
    updated_at: datetime | None = None
    raw: Mapping[str, Any] = _raw()

    def has_status(self, status: str) -> bool:
        return self.status == status.strip().upper()

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_PAYOUT_STATUSES

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PayoutWithdrawal:
        data = p.as_mapping(data, what="a withdrawal")
        return cls(
            id=p.id_required(data.get("id"), name="withdrawal id"),
            status=(p.str_or_none(data.get("status")) or "").strip().upper(),
            address=p.str_or_none(data.get("address")),
            currency=p.lower_or_none(data.get("currency")),
            amount=p.decimal_or_none(data.get("amount"), name="amount"),
            batch_withdrawal_id=p.id_or_none(
                p.first(data, "batch_withdrawal_id", "batchWithdrawalId")
            ),
            extra_id=p.id_or_none(data.get("extra_id")),
            hash=p.str_or_none(data.get("hash")),
            error=p.str_or_none(data.get("error")),
            fee=_fee_or_none(data.get("fee")),
            is_request_payouts=p.bool_or_none(data.get("is_request_payouts")),
            ipn_callback_url=p.str_or_none(data.get("ipn_callback_url")),
            unique_external_id=p.str_or_none(data.get("unique_external_id")),
            payout_description=p.str_or_none(data.get("payout_description")),
            created_at=p.datetime_or_none(p.first(data, "created_at", "createdAt")),
            requested_at=p.datetime_or_none(p.first(data, "requested_at", "requestedAt")),
            updated_at=p.datetime_or_none(p.first(data, "updated_at", "updatedAt")),
            raw=dict(data),
        )


def _fee_or_none(value: Any) -> Decimal | None:
    if isinstance(value, Mapping):  # some bodies carry a fee object rather than a number
        return None
    return p.decimal_or_none(value, name="fee")


@dataclass(frozen=True)
class PayoutBatch(_ReadsLikeTheProviderDict):
    """A payout batch: ``id`` is the batch id that ``verify_payout`` takes."""

    id: str
    withdrawals: tuple[PayoutWithdrawal, ...]
    created_at: datetime | None = None
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_dict(cls, data: Any) -> PayoutBatch:
        if isinstance(data, list):  # tolerate a bare array of withdrawals
            withdrawals = tuple(PayoutWithdrawal.from_dict(row) for row in data)
            batch_id = next(
                (w.batch_withdrawal_id for w in withdrawals if w.batch_withdrawal_id), None
            )
            if not batch_id:
                raise p.MalformedResponse("NowPayments sent a payout without a batch id.")
            return cls(id=batch_id, withdrawals=withdrawals, raw={"withdrawals": data})
        data = p.as_mapping(data, what="a payout")
        rows = p.as_list(data.get("withdrawals", []), what="the withdrawals list")
        return cls(
            id=p.id_required(p.first(data, "id", "batch_withdrawal_id"), name="payout id"),
            withdrawals=tuple(PayoutWithdrawal.from_dict(row) for row in rows),
            created_at=p.datetime_or_none(p.first(data, "created_at", "createdAt")),
            raw=dict(data),
        )


def parse_withdrawals(body: Any) -> list[PayoutWithdrawal]:
    """Withdrawals from any of the shapes seen: array, ``{withdrawals}``, ``{payouts}``, one."""
    if isinstance(body, Mapping):
        for key in ("withdrawals", "payouts", "data"):
            if isinstance(body.get(key), list):
                return parse_withdrawals(body[key])
        if "status" in body and "id" in body:
            return [PayoutWithdrawal.from_dict(body)]
        raise p.MalformedResponse("NowPayments' payout answer has no withdrawals.")
    result: list[PayoutWithdrawal] = []
    for row in p.as_list(body, what="a list of withdrawals"):
        if isinstance(row, Mapping) and isinstance(row.get("withdrawals"), list):
            result.extend(parse_withdrawals(row["withdrawals"]))  # a batch inside a list
        else:
            result.append(PayoutWithdrawal.from_dict(row))
    return result
