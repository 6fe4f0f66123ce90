"""The simulated mass-payout endpoints under /v1 (spec 2.12-2.16)."""

from __future__ import annotations

from sandbox import bodies, catalogue, payout_flow
from sandbox.api import body_of, date_param, numeric_id
from sandbox.errors import ApiError, invalid_params, not_found
from sandbox.params import int_param, str_param
from sandbox.routing import Request, Response, Router, json_response, text_response
from sandbox.state import SandboxState

router = Router()

PAYOUT_SORT_FIELDS = {
    "id": "id",
    "batchId": "batch_id",
    "dateCreated": "created_at",
    "dateRequested": "requested_at",
    "dateUpdated": "updated_at",
    "currency": "currency",
    "status": "status",
}


@router.route("POST", "/v1/payout/validate-address", auth="key")
def validate_address(state: SandboxState, request: Request) -> Response:
    data = body_of(request)
    address = str_param(data, "address", required=True)
    code = str_param(data, "currency", required=True)
    currency = catalogue.crypto(code)
    extra_id = str_param(data, "extra_id")
    if currency is None or not currency.enable or not currency.is_valid_address(address):
        raise ApiError(
            400, "BAD_CREATE_WITHDRAWAL_REQUEST", f"Invalid payout_address: {code} {address}"
        )
    if not currency.is_valid_extra_id(extra_id):
        raise ApiError(400, "BAD_CREATE_WITHDRAWAL_REQUEST", f"Invalid extra_id: {code} {extra_id}")
    return text_response(200, "OK")


@router.route("POST", "/v1/payout", auth="jwt")
def create_payout(state: SandboxState, request: Request) -> Response:
    batch, items = payout_flow.create_batch(state, body_of(request))
    mixed = state.quirks["payout_timestamps"] == "mixed"
    return json_response(200, bodies.batch(batch, items, mixed_timestamps=mixed))


@router.route("POST", "/v1/payout/{batch_id}/verify", auth="jwt")
def verify_payout(state: SandboxState, request: Request) -> Response:
    batch_id = numeric_id(request.params["batch_id"], "Payout")
    payout_flow.verify(state, batch_id, body_of(request))
    return text_response(200, "OK")


@router.route("GET", "/v1/payout/{id}", auth="key")
def payout_status(state: SandboxState, request: Request) -> Response:
    payout_id = numeric_id(request.params["id"], "Payout")
    with state.lock:
        if payout_id in state.batches:
            ids = state.batches[payout_id].withdrawals
        elif payout_id in state.withdrawals:
            ids = [payout_id]
        else:
            raise not_found("Payout not found")
        return json_response(200, [bodies.withdrawal(state.withdrawals[i]) for i in ids])


@router.route("GET", "/v1/payout", auth="key")
def list_payouts(state: SandboxState, request: Request) -> Response:
    query = request.query
    limit = int_param(query, "limit", 10, low=1, high=500)
    page = int_param(query, "page", 0, low=0)
    order_by = query.get("order_by") or "id"
    if order_by not in PAYOUT_SORT_FIELDS:
        raise invalid_params(f'"order_by" must be one of [{", ".join(PAYOUT_SORT_FIELDS)}]')
    order = (query.get("order") or "asc").lower()
    if order not in ("asc", "desc"):
        raise invalid_params('"order" must be one of [asc, desc]')
    date_from = date_param(query, "date_from")
    date_to = date_param(query, "date_to", end_of_day=True)
    batch_raw = query.get("batch_id")
    batch_id = numeric_id(batch_raw, "Batch") if batch_raw else None
    wanted_status = (query.get("status") or "").upper() or None
    field = PAYOUT_SORT_FIELDS[order_by]
    with state.lock:
        items = [
            w
            for w in state.withdrawals.values()
            if (batch_id is None or w.batch_id == batch_id)
            and (wanted_status is None or w.status == wanted_status)
            and (date_from is None or w.created_at >= date_from)
            and (date_to is None or w.created_at <= date_to)
        ]
        items.sort(
            key=lambda w: (getattr(w, field) is None, getattr(w, field) or 0, w.id),
            reverse=order == "desc",
        )
        window = items[page * limit : (page + 1) * limit]
        return json_response(200, {"payouts": [bodies.withdrawal(w) for w in window]})
