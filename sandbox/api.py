"""The simulated NowPayments endpoints under /v1: auth, currencies, payments, invoices."""

from __future__ import annotations

import bisect
import hmac
import math
from decimal import Decimal
from typing import Any

from sandbox import bodies, catalogue, jsjson, payment_flow, tokens
from sandbox.clock import parse_date
from sandbox.errors import ApiError, invalid_params, not_found
from sandbox.models import Invoice, Payment
from sandbox.params import amount_param, bool_param, crypto_param, int_param, str_param
from sandbox.request_body import parse_form
from sandbox.routing import (
    Request,
    Response,
    Router,
    json_response,
    raw_json_response,
)
from sandbox.state import SandboxState

router = Router()

PAYMENT_SORT_FIELDS = (
    "created_at",
    "payment_id",
    "payment_status",
    "pay_address",
    "price_amount",
    "price_currency",
    "pay_amount",
    "actually_paid",
    "pay_currency",
    "order_id",
    "order_description",
    "purchase_id",
    "outcome_amount",
    "outcome_currency",
)
_FULL_CURRENCIES = jsjson.dumps({"currencies": [c.full_entry() for c in catalogue.CURRENCIES]})


def body_of(request: Request) -> dict[str, Any]:
    """The body as Express's parsers read it: JSON, or ``x-www-form-urlencoded`` with the
    ``qs`` bracket syntax (values are strings). Any other content type is ignored (an empty
    object), so required fields then fail validation."""
    content_type = request.headers.get("content-type", "").lower()
    try:
        if "application/x-www-form-urlencoded" in content_type:
            return parse_form(request.body)
        if "json" not in content_type:
            return {}
        data = request.json()
    except (ValueError, UnicodeError):
        raise invalid_params("Request body must be a valid JSON object") from None
    if not isinstance(data, dict):
        raise invalid_params("Request body must be a valid JSON object")
    return data


def numeric_id(raw: str, what: str) -> int:
    if not raw.isascii() or not raw.isdigit():
        raise invalid_params(f"{what} id must be a number")
    return int(raw)


@router.route("GET", "/v1/status")
def status(state: SandboxState, request: Request) -> Response:
    return json_response(200, {"message": "OK"})


@router.route("POST", "/v1/auth")
def auth(state: SandboxState, request: Request) -> Response:
    data = body_of(request)
    email = str_param(data, "email", required=True)
    password = str_param(data, "password", required=True)
    config = state.config
    good_email = hmac.compare_digest(email.encode(), config.email.encode())
    good_password = hmac.compare_digest(password.encode(), config.password.encode())
    if not (good_email and good_password):
        raise ApiError(401, "INVALID_CREDENTIALS", "Invalid email or password")
    return json_response(200, {"token": tokens.issue(state)})


@router.route("GET", "/v1/currencies", auth="key")
def currencies(state: SandboxState, request: Request) -> Response:
    fixed = bool_param(request.query, "fixed_rate")
    codes = [c.code for c in catalogue.CURRENCIES if c.enable and (c.fixed_rate or not fixed)]
    return json_response(200, {"currencies": codes})


@router.route("GET", "/v1/full-currencies", auth="key")
def full_currencies(state: SandboxState, request: Request) -> Response:
    return raw_json_response(200, _FULL_CURRENCIES)


@router.route("GET", "/v1/merchant/coins", auth="key")
def merchant_coins(state: SandboxState, request: Request) -> Response:
    codes = [c.code for c in catalogue.CURRENCIES if c.enable and c.merchant]
    return json_response(200, {state.quirks["merchant_coins_key"]: codes})


def _known(code: str | None, name: str) -> str:
    if code is None:
        raise invalid_params(f'"{name}" is required')
    if catalogue.usd_rate(code) is None:
        crypto_param(code)  # unknown: "was not found"; disabled: "is not available"
    return code.lower()


@router.route("GET", "/v1/min-amount", auth="key")
def min_amount(state: SandboxState, request: Request) -> Response:
    query = request.query
    source = _known(str_param(query, "currency_from"), "currency_from")
    target = _known(str_param(query, "currency_to") or source, "currency_to")
    minimum = catalogue.min_amount(
        source,
        target,
        fixed_rate=bool_param(query, "is_fixed_rate"),
        fee_paid_by_user=bool_param(query, "is_fee_paid_by_user"),
    )
    answer: dict[str, Any] = {"currency_from": source, "currency_to": target, "min_amount": minimum}
    fiat = str_param(query, "fiat_equivalent")
    if fiat is not None:
        if fiat.lower() not in catalogue.FIAT_USD:
            raise invalid_params(
                f'"fiat_equivalent" must be one of [{", ".join(catalogue.FIAT_USD)}]'
            )
        value = catalogue.convert(minimum, source, fiat)
        answer["fiat_equivalent"] = value.quantize(Decimal("0.00000001"))
    return json_response(200, answer)


@router.route("GET", "/v1/estimate", auth="key")
def estimate(state: SandboxState, request: Request) -> Response:
    query = request.query
    amount = amount_param(query, "amount", required=True)
    source = _known(str_param(query, "currency_from"), "currency_from")
    target = _known(str_param(query, "currency_to"), "currency_to")
    value = catalogue.convert(amount, source, target)
    quantum = Decimal(1).scaleb(-catalogue.precision_of(target))
    return json_response(
        200,
        {
            "currency_from": source,
            "amount_from": amount,
            "currency_to": target,
            "estimated_amount": value.quantize(quantum),
        },
    )


def _created(state: SandboxState, payment: Payment) -> Response:
    as_string = state.quirks["pay_amount_as_string"]
    return json_response(201, bodies.payment_created(payment, pay_amount_as_string=as_string))


@router.route("POST", "/v1/payment", auth="key")
def create_payment(state: SandboxState, request: Request) -> Response:
    payment = payment_flow.create_payment(state, body_of(request))
    return _created(state, payment)


@router.route("GET", "/v1/payment/{id}", auth="key")
def payment_status(state: SandboxState, request: Request) -> Response:
    payment_id = numeric_id(request.params["id"], "Payment")
    if state.quirks["payment_status_requires_jwt"]:
        tokens.require(state, request.headers.get("authorization"))
    with state.lock:
        payment = state.payments.get(payment_id)
        if payment is None:
            raise not_found("Payment not found")
        return raw_json_response(200, state.status_json(payment))


def date_param(query: dict[str, str], name: str, *, end_of_day: bool = False) -> float | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        return parse_date(raw, end_of_day=end_of_day)
    except ValueError:
        raise invalid_params(f'"{name}" must be a valid date') from None


def _sort_key(field: str) -> Any:
    def key(payment: Payment) -> tuple[bool, Any]:
        if field == "payment_id":
            value: Any = payment.id
        elif field == "payment_status":
            value = payment.status
        elif field == "outcome_amount":
            value = bodies.outcome_amount(payment)
        else:
            value = getattr(payment, field)
        return (value is None, value if value is not None else 0)

    return key


@router.route("GET", "/v1/payment/", auth="jwt")
def list_payments(state: SandboxState, request: Request) -> Response:
    query = request.query
    limit = int_param(query, "limit", 10, low=1, high=500)
    page = int_param(query, "page", 0, low=0)
    sort_by = query.get("sortBy") or "created_at"
    if sort_by not in PAYMENT_SORT_FIELDS:
        raise invalid_params(f'"sortBy" must be one of [{", ".join(PAYMENT_SORT_FIELDS)}]')
    order_by = (query.get("orderBy") or "asc").lower()
    if order_by not in ("asc", "desc"):
        raise invalid_params('"orderBy" must be one of [asc, desc]')
    date_from = date_param(query, "dateFrom")
    date_to = date_param(query, "dateTo", end_of_day=True)
    invoice_raw = query.get("invoiceId")
    invoice_id = numeric_id(invoice_raw, "Invoice") if invoice_raw else None
    with state.lock:
        index = state.created_index
        low = bisect.bisect_left(index, date_from) if date_from is not None else 0
        high = bisect.bisect_right(index, date_to) if date_to is not None else len(index)
        chosen = [state.payments[i] for i in state.payment_order[low:high]]
        if invoice_id is not None:
            chosen = [p for p in chosen if p.invoice_id == invoice_id]
        descending = order_by == "desc"
        if sort_by != "created_at":
            chosen.sort(key=_sort_key(sort_by), reverse=descending)
        elif descending:
            chosen.reverse()
        total = len(chosen)
        window = chosen[page * limit : (page + 1) * limit]
        data = ",".join(state.status_json(p) for p in window)
    pages = math.ceil(total / limit)
    text = f'{{"data":[{data}],"limit":{limit},"page":{page},"pagesCount":{pages},"total":{total}}}'
    return raw_json_response(200, text)


@router.route("POST", "/v1/invoice", auth="key")
def create_invoice(state: SandboxState, request: Request) -> Response:
    data = body_of(request)
    price_amount = amount_param(data, "price_amount", required=True)
    price_currency = _known(str_param(data, "price_currency", required=True), "price_currency")
    pay_currency = str_param(data, "pay_currency")
    if pay_currency is not None:
        pay_currency = crypto_param(pay_currency).code
    urls = {}
    for name in ("ipn_callback_url", "success_url", "cancel_url", "partially_paid_url"):
        urls[name] = str_param(data, name)
        if urls[name] is not None and not urls[name].startswith(("http://", "https://")):
            raise invalid_params(f'"{name}" must be a valid uri with a scheme http or https')
    with state.lock:
        invoice_id = state.next_id("invoice")
        record = Invoice(
            id=invoice_id,
            token_id=catalogue.random_hash(f"{invoice_id}:token", "sol")[:9],
            price_amount=price_amount,
            price_currency=price_currency,
            pay_currency=pay_currency,
            order_id=str_param(data, "order_id"),
            order_description=str_param(data, "order_description"),
            is_fixed_rate=bool_param(data, "is_fixed_rate"),
            is_fee_paid_by_user=bool_param(data, "is_fee_paid_by_user"),
            created_at=state.now(),
            **urls,
        )
        state.invoices[invoice_id] = record
    return json_response(201, bodies.invoice(record))


@router.route("POST", "/v1/invoice-payment", auth="key")
def invoice_payment(state: SandboxState, request: Request) -> Response:
    data = body_of(request)
    iid = numeric_id(str_param(data, "iid", required=True), "Invoice")
    with state.lock:
        record = state.invoices.get(iid)
    if record is None:
        raise not_found("Invoice not found")
    if data.get("pay_currency") is None and record.pay_currency:
        data["pay_currency"] = record.pay_currency
    payment = payment_flow.create_payment(state, data, invoice=record)
    return _created(state, payment)


@router.route("GET", "/v1/balance", auth="key")
def balance(state: SandboxState, request: Request) -> Response:
    return json_response(200, state.balances())
