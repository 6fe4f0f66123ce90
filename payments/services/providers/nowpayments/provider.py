"""The NowPayments client: one method per endpoint, each returning a typed, immutable result."""

from __future__ import annotations

import binascii
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import pyotp
import requests

from payments.errors import (
    AmountBelowMinimum,
    ConfigurationError,
    InvalidAmount,
    ProviderRejected,
)
from payments.services.providers.nowpayments import parsing as p
from payments.services.providers.nowpayments.config import NowPaymentsConfig
from payments.services.providers.nowpayments.transport import Transport
from payments.services.providers.nowpayments.types import (
    ApiStatus,
    Balance,
    Estimate,
    FullCurrency,
    Invoice,
    MinAmount,
    PaymentPage,
    PayoutBatch,
    PayoutFee,
    PayoutMinAmount,
    PayoutRequest,
    PayoutWithdrawal,
    ProviderPayment,
    parse_withdrawals,
)

PAYOUT_QUANTUM = Decimal("0.000001")  # NowPayments takes at most 6 decimals on payouts
MAX_PAGE_SIZE = 500
_INVALID_ADDRESS_CODE = "BAD_CREATE_WITHDRAWAL_REQUEST"

DateLike = date | datetime | str


class NowPaymentsProvider:
    """A client for the NowPayments merchant API (``x-api-key``, plus a JWT where needed).

    Every failure reaches the caller as a domain error: ``ProviderUnavailable`` (retry later:
    timeouts, connection errors, 5xx, 429, unreadable bodies) or ``ProviderRejected`` (4xx,
    with NowPayments' own ``code``). No ``requests`` exception escapes.
    """

    def __init__(
        self,
        config: NowPaymentsConfig,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if config.enabled:
            if not config.api_key:
                raise ConfigurationError(
                    "NOWPAYMENTS_API_KEY is empty: the NowPayments client needs an API key."
                )
            url = urlsplit(config.api_url)
            if url.scheme not in {"http", "https"} or not url.netloc:
                raise ConfigurationError(
                    "NOWPAYMENTS_API_URL must be an http:// or https:// URL; "
                    f"got {config.api_url!r}."
                )
        self.config = config
        self._http = Transport(config, session=session, clock=clock or time.monotonic)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NowPaymentsProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NowPaymentsProvider(api_url={self.config.api_url!r})"

    # --- API status and currencies --------------------------------------------------------

    def status(self) -> ApiStatus:
        """``GET /status`` (no key); ``.ok`` is True when NowPayments says "OK"."""
        body = p.as_mapping(self._http.call("GET", "/status", api_key=False), what="a status")
        return ApiStatus(message=p.str_or_none(body.get("message")) or "", raw=dict(body))

    def get_currencies(self, fixed_rate: bool = False) -> list[str]:
        """Lower-case tickers NowPayments accepts (only fixed-rate ones with ``fixed_rate``)."""
        params = {"fixed_rate": True} if fixed_rate else None
        body = p.as_mapping(self._http.call("GET", "/currencies", params=params), what="currencies")
        return _tickers(body.get("currencies"))

    def get_full_currencies(self) -> list[FullCurrency]:
        body = p.as_mapping(self._http.call("GET", "/full-currencies"), what="currencies")
        rows = p.as_list(body.get("currencies"), what="the currencies list")
        return [FullCurrency.from_dict(row) for row in rows]

    def get_merchant_coins(self) -> list[str]:
        """Coins enabled in the dashboard (the key is ``selectedCurrencies`` or ``currencies``)."""
        body = p.as_mapping(self._http.call("GET", "/merchant/coins"), what="merchant coins")
        for key in ("selectedCurrencies", "currencies"):
            if key in body:
                return _tickers(body[key])
        raise p.MalformedResponse("NowPayments' merchant coins answer has no currency list.")

    def get_min_amount(
        self,
        currency_from: str,
        currency_to: str | None = None,
        fiat_equivalent: str | None = None,
        is_fixed_rate: bool | None = None,
        is_fee_paid_by_user: bool | None = None,
    ) -> MinAmount:
        params = {
            "currency_from": _ticker(currency_from),
            "currency_to": _ticker(currency_to) if currency_to else None,
            "fiat_equivalent": _ticker(fiat_equivalent) if fiat_equivalent else None,
            "is_fixed_rate": is_fixed_rate,
            "is_fee_paid_by_user": is_fee_paid_by_user,
        }
        return MinAmount.from_dict(self._http.call("GET", "/min-amount", params=params))

    def get_estimate(
        self, amount: Decimal | int | str, currency_from: str, currency_to: str
    ) -> Estimate:
        params = {
            "amount": _positive_amount(amount, name="amount"),
            "currency_from": _ticker(currency_from),
            "currency_to": _ticker(currency_to),
        }
        return Estimate.from_dict(self._http.call("GET", "/estimate", params=params))

    # --- payments --------------------------------------------------------------------------

    def create_payment(
        self,
        *,
        price_amount: Decimal,
        price_currency: str = "usd",
        pay_currency: str,
        order_id: str | None = None,
        order_description: str | None = None,
        ipn_callback_url: str | None = None,
        is_fixed_rate: bool | None = None,
        is_fee_paid_by_user: bool | None = None,
        case: str | None = None,
        purchase_id: str | None = None,
        pay_amount: Decimal | None = None,
    ) -> ProviderPayment:
        """``POST /payment``. Never retried automatically: on ProviderUnavailable the payment
        may or may not exist; look it up by ``order_id`` before creating another."""
        body = _without_none(
            {
                "price_amount": _positive_amount(price_amount, name="price_amount"),
                "price_currency": _ticker(price_currency),
                "pay_currency": _ticker(pay_currency),
                "pay_amount": _positive_amount(pay_amount, name="pay_amount")
                if pay_amount is not None
                else None,
                "order_id": order_id,
                "order_description": order_description,
                "ipn_callback_url": ipn_callback_url,
                "is_fixed_rate": is_fixed_rate,
                "is_fee_paid_by_user": is_fee_paid_by_user,
                "purchase_id": purchase_id,
                "case": case,
            }
        )
        return ProviderPayment.from_dict(self._http.call("POST", "/payment", body=body))

    def get_payment_status(self, payment_id: str | int) -> ProviderPayment:
        path = f"/payment/{quote(str(payment_id).strip(), safe='')}"
        return ProviderPayment.from_dict(self._http.call("GET", path))

    def list_payments(
        self,
        *,
        limit: int = MAX_PAGE_SIZE,
        page: int = 0,
        sort_by: str | None = None,
        order_by: str | None = None,
        date_from: DateLike | None = None,
        date_to: DateLike | None = None,
        invoice_id: str | int | None = None,
    ) -> PaymentPage:
        """One page of ``GET /payment/`` (needs the JWT; query names are camelCase)."""
        if not 1 <= limit <= MAX_PAGE_SIZE or page < 0:
            raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE} and page >= 0")
        params = {
            "limit": limit,
            "page": page,
            "sortBy": sort_by,
            "orderBy": order_by,
            "dateFrom": date_from,
            "dateTo": date_to,
            "invoiceId": invoice_id,
        }
        body = self._http.call("GET", "/payment/", params=params, jwt=True)
        return PaymentPage.from_dict(body, limit=limit, page=page)

    def iter_payments(self, **filters: Any) -> Iterator[ProviderPayment]:
        """Every payment matching ``filters`` (``list_payments`` arguments), page after page."""
        page = int(filters.pop("page", 0))
        while True:
            result = self.list_payments(page=page, **filters)
            yield from result.data
            if not result.data or not result.has_next:
                return
            page = result.page + 1

    def create_invoice(
        self,
        *,
        price_amount: Decimal,
        price_currency: str = "usd",
        pay_currency: str | None = None,
        order_id: str | None = None,
        order_description: str | None = None,
        ipn_callback_url: str | None = None,
        success_url: str | None = None,
        cancel_url: str | None = None,
        partially_paid_url: str | None = None,
        is_fixed_rate: bool | None = None,
        is_fee_paid_by_user: bool | None = None,
    ) -> Invoice:
        body = _without_none(
            {
                "price_amount": _positive_amount(price_amount, name="price_amount"),
                "price_currency": _ticker(price_currency),
                "pay_currency": _ticker(pay_currency) if pay_currency else None,
                "order_id": order_id,
                "order_description": order_description,
                "ipn_callback_url": ipn_callback_url,
                "success_url": success_url,
                "cancel_url": cancel_url,
                "partially_paid_url": partially_paid_url,
                "is_fixed_rate": is_fixed_rate,
                "is_fee_paid_by_user": is_fee_paid_by_user,
            }
        )
        return Invoice.from_dict(self._http.call("POST", "/invoice", body=body))

    # --- balance and payouts ---------------------------------------------------------------

    def get_balance(self) -> dict[str, Balance]:
        """Custody balances keyed by lower-case ticker."""
        body = p.as_mapping(self._http.call("GET", "/balance"), what="balances")
        return {
            str(code).lower(): Balance.from_dict(str(code), entry)
            for code, entry in body.items()
            if isinstance(entry, Mapping)
        }

    def validate_address(self, address: str, currency: str, extra_id: str | None = None) -> bool:
        """True for a valid payout address ("OK"); False when NowPayments says it is invalid."""
        body = {"address": address, "currency": _ticker(currency), "extra_id": extra_id}
        try:
            answer = self._http.call("POST", "/payout/validate-address", body=body, text_ok=True)
        except ProviderRejected as exc:
            if exc.http_status == 400 and exc.provider_code == _INVALID_ADDRESS_CODE:
                return False
            raise
        if answer == "OK" or answer is True:
            return True
        raise p.MalformedResponse("NowPayments' validate-address answer was not OK.")

    def get_payout_fee(self, currency: str, amount: Decimal | int | str) -> PayoutFee:
        """``GET /payout/fee``: the network fee NowPayments charges now to pay ``amount`` of
        ``currency`` out, in that currency (API key only; the fee is dynamic)."""
        params = {"currency": _ticker(currency), "amount": _positive_amount(amount, name="amount")}
        body = self._http.call("GET", "/payout/fee", params=params)
        return PayoutFee.from_dict(body, currency=currency)

    def get_payout_min_amount(self, currency: str) -> PayoutMinAmount:
        """``GET /payout-withdrawal/min-amount/{coin}``: the smallest payout NowPayments sends
        in ``currency``, in that currency (API key only)."""
        path = f"/payout-withdrawal/min-amount/{quote(_ticker(currency), safe='')}"
        return PayoutMinAmount.from_dict(self._http.call("GET", path), currency=currency)

    def log_in(self) -> None:
        """Hold a valid JWT (``POST /auth`` unless one is held), so that a later JWT call makes
        no login of its own first."""
        self._http.token()

    def create_payout(
        self,
        withdrawals: list[PayoutRequest],
        ipn_callback_url: str | None = None,
        payout_description: str | None = None,
    ) -> PayoutBatch:
        """``POST /payout`` (JWT). Amounts are rounded down to 6 decimals; never retried."""
        if not withdrawals:
            raise InvalidAmount("A payout needs at least one withdrawal.")
        body = _without_none(
            {
                "ipn_callback_url": ipn_callback_url,
                "payout_description": payout_description,
                "withdrawals": [_withdrawal_body(w) for w in withdrawals],
            }
        )
        return PayoutBatch.from_dict(self._http.call("POST", "/payout", body=body, jwt=True))

    def verify_payout(self, batch_id: str | int, code: str | None = None) -> bool:
        """Confirm a payout batch with 2FA; the code defaults to the TOTP of ``totp_secret``."""
        if code is None:
            if not self.config.totp_secret:
                raise ConfigurationError(
                    "NOWPAYMENTS_TOTP_SECRET is empty: it is needed to verify payouts."
                )
            code = current_totp(self.config.totp_secret)
        path = f"/payout/{quote(str(batch_id).strip(), safe='')}/verify"
        answer = self._http.call(
            "POST", path, body={"verification_code": str(code)}, jwt=True, text_ok=True
        )
        if answer == "OK" or answer is True:
            return True
        raise p.MalformedResponse("NowPayments' payout verification answer was not OK.")

    def get_payout(self, payout_id: str | int) -> list[PayoutWithdrawal]:
        """The withdrawals of a payout (the API answers an array or a ``{id, withdrawals}``)."""
        path = f"/payout/{quote(str(payout_id).strip(), safe='')}"
        return parse_withdrawals(self._http.call("GET", path))

    def list_payouts(
        self,
        *,
        batch_id: str | int | None = None,
        status: str | None = None,
        order_by: str | None = None,
        order: str | None = None,
        date_from: DateLike | None = None,
        date_to: DateLike | None = None,
        limit: int | None = None,
        page: int | None = None,
    ) -> list[PayoutWithdrawal]:
        """``GET /payout`` (JWT; query names are snake_case here, unlike the payments list)."""
        params = {
            "batch_id": batch_id,
            "status": status,
            "order_by": order_by,
            "order": order,
            "date_from": date_from,
            "date_to": date_to,
            "limit": limit,
            "page": page,
        }
        return parse_withdrawals(self._http.call("GET", "/payout", params=params, jwt=True))


class _DashboardTOTP(pyotp.TOTP):
    # pyotp >= 2.10 refuses secrets under 112 bits, but authenticator secrets shown by
    # dashboards are commonly 16 base32 characters (80 bits); NowPayments decides, not us.
    min_secret_length_bits = 80


def current_totp(secret: str, *, for_time: int | None = None) -> str:
    """The 6-digit TOTP code for a base32 secret now (as an authenticator app shows it)."""
    try:
        totp = _DashboardTOTP(secret.replace(" ", "").upper())
        return totp.now() if for_time is None else totp.at(for_time)
    except (ValueError, TypeError, binascii.Error):
        raise ConfigurationError(
            "NOWPAYMENTS_TOTP_SECRET is not a valid base32 2FA secret of at least 16 characters."
        ) from None


def _ticker(code: str) -> str:
    return code.strip().lower()


def _tickers(value: Any) -> list[str]:
    rows = p.as_list(value, what="a currency list")
    codes = [row.get("code") if isinstance(row, Mapping) else row for row in rows]
    return [str(code).strip().lower() for code in codes if code]


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def _positive_amount(value: Any, *, name: str) -> Decimal:
    """A finite, positive Decimal from a Decimal, int or numeric string; floats are refused."""
    if isinstance(value, float | bool):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}")
    amount = p.decimal_or_none(value, name=name) if isinstance(value, str | int | Decimal) else None
    if amount is None or amount <= 0:
        raise InvalidAmount(f"{name} must be a positive amount; got {value!r}.")
    return amount


def _withdrawal_body(request: PayoutRequest) -> dict[str, Any]:
    requested = _positive_amount(request.amount, name="amount")
    amount = requested.quantize(PAYOUT_QUANTUM, rounding=ROUND_DOWN)
    if amount <= 0:
        raise AmountBelowMinimum(
            f"A payout of {requested} {request.currency} rounds down to zero at "
            "NowPayments' 6 decimal places."
        )
    return _without_none(
        {
            "address": request.address,
            "currency": _ticker(request.currency),
            "amount": amount,
            "extra_id": request.extra_id,
            "ipn_callback_url": request.ipn_callback_url,
            "unique_external_id": request.unique_external_id,
        }
    )
