"""The payout fee and minimum endpoints under /v1 (spec 2.16): what a payout of a coin costs."""

from __future__ import annotations

from sandbox import catalogue
from sandbox.errors import invalid_params
from sandbox.params import amount_param, crypto_param, str_param
from sandbox.routing import Request, Response, Router, json_response
from sandbox.state import SandboxState

router = Router()


def _coin(code: str | None) -> catalogue.Currency:
    if code is None:
        raise invalid_params('"currency" is required')
    return crypto_param(code)  # unknown: "was not found"; disabled: "is not available"


@router.route("GET", "/v1/payout/fee", auth="key")
def payout_fee(state: SandboxState, request: Request) -> Response:
    """``{"currency": <as sent>, "fee": <coin amount>}``; the docs' example echoes the ticker
    as it was sent (``USDTTRC20``). The fee is the coin's network fee whatever the amount (the
    real one is "dynamic"; nothing says on what)."""
    code = str_param(request.query, "currency")
    currency = _coin(code)
    amount_param(request.query, "amount", required=True)
    return json_response(200, {"currency": code, "fee": currency.payout_fee})


@router.route("GET", "/v1/payout-withdrawal/min-amount/{coin}", auth="key")
def payout_min_amount(state: SandboxState, request: Request) -> Response:
    """``{"success": true, "result": <coin amount>}``: the smallest payout of the coin."""
    currency = _coin(request.params["coin"])
    return json_response(200, {"success": True, "result": currency.payout_min})
