"""A small requests-based client for the control API (and a JWT helper for tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import requests


class ControlError(RuntimeError):
    """A control call answered with a non-2xx status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"sandbox control call failed with {status}: {body}")
        self.status = status
        self.body = body


def _amount(value: Decimal | str | int | None) -> str | None:
    return None if value is None else str(value)


class ControlClient:
    """One method per control endpoint; answers are parsed with Decimal floats."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False

    def close(self) -> None:
        self.session.close()

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **query: Any
    ) -> Any:
        response = self.session.request(
            method,
            f"{self.base_url}/_sandbox{path}",
            json=None if body is None else {k: v for k, v in body.items() if v is not None},
            params={k: v for k, v in query.items() if v is not None} or None,
            timeout=self.timeout,
        )
        data = response.json(parse_float=Decimal)
        if not response.ok:
            raise ControlError(response.status_code, data)
        return data

    # state
    def reset(self) -> None:
        self._call("POST", "/reset")

    def payments(self) -> list[dict[str, Any]]:
        return self._call("GET", "/payments")["payments"]

    def payment(self, payment_id: int | str) -> dict[str, Any]:
        return self._call("GET", f"/payments/{payment_id}")

    # payment actions
    def pay(
        self, payment_id: int | str, amount: Decimal | str | None = None, hash: str | None = None
    ) -> dict[str, Any]:
        body = {"amount": _amount(amount), "hash": hash}
        return self._call("POST", f"/payments/{payment_id}/pay", body)

    def advance(self, payment_id: int | str, status: str | None = None) -> dict[str, Any]:
        return self._call("POST", f"/payments/{payment_id}/advance", {"status": status})

    def expire(self, payment_id: int | str) -> dict[str, Any]:
        return self._call("POST", f"/payments/{payment_id}/expire", {})

    def refund(self, payment_id: int | str) -> dict[str, Any]:
        return self._call("POST", f"/payments/{payment_id}/refund", {})

    def redeposit(self, payment_id: int | str, amount: Decimal | str) -> dict[str, Any]:
        body = {"amount": _amount(amount)}
        return self._call("POST", f"/payments/{payment_id}/redeposit", body)

    def complete(self, payment_id: int | str) -> dict[str, Any]:
        return self._call("POST", f"/payments/{payment_id}/complete", {})

    def resend_ipn(self, payment_id: int | str) -> dict[str, Any]:
        return self._call("POST", f"/payments/{payment_id}/ipn", {})

    def dashboard_finish(self, payment_id: int | str) -> dict[str, Any]:
        """The merchant's manual "finished" (partially_paid or wrong_asset_confirmed)."""
        return self._call("POST", f"/payments/{payment_id}/dashboard-finish", {})

    def wrong_asset(
        self,
        payment_id: int | str,
        currency: str,
        amount: Decimal | str,
        *,
        auto_process: bool = False,
        hash: str | None = None,
    ) -> dict[str, Any]:
        """A deposit of another asset: wrong_asset_confirmed, or finished in that asset."""
        body = {
            "currency": currency,
            "amount": _amount(amount),
            "auto_process": auto_process,
            "hash": hash,
        }
        return self._call("POST", f"/payments/{payment_id}/wrong-asset", body)

    # clock
    def clock(self) -> dict[str, Any]:
        return self._call("GET", "/clock")

    def advance_clock(self, seconds: float | Decimal | int) -> dict[str, Any]:
        return self._call("POST", "/clock", {"advance_seconds": str(seconds)})

    # faults and quirks
    def set_fault(
        self,
        mode: str,
        count: int = 1,
        path: str | None = None,
        delay: float | None = None,
        method: str | None = None,
    ) -> dict[str, Any]:
        body = {"mode": mode, "count": count, "path": path, "method": method}
        if delay is not None:
            body["delay"] = str(delay)
        return self._call("POST", "/faults", body)

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def quirks(self) -> dict[str, Any]:
        return self._call("GET", "/quirks")

    def set_quirks(self, **quirks: Any) -> dict[str, Any]:
        return self._call("POST", "/quirks", quirks)

    # payouts and balance
    def payouts(self) -> list[dict[str, Any]]:
        return self._call("GET", "/payouts")["payouts"]

    def advance_payout(
        self, payout_id: int | str, status: str | None = None
    ) -> list[dict[str, Any]]:
        return self._call("POST", f"/payouts/{payout_id}/advance", {"status": status})[
            "withdrawals"
        ]

    def bulk_payouts(
        self,
        count: int,
        *,
        currency: str | None = None,
        amount: Decimal | str | None = None,
        address: str | None = None,
        status: str | None = None,
        per_batch: int | None = None,
        ipn_callback_url: str | None = None,
    ) -> list[dict[str, Any]]:
        """Create ``count`` withdrawals at once (no JWT/2FA); the batches with their ids."""
        body = {
            "count": count,
            "currency": currency,
            "amount": _amount(amount),
            "address": address,
            "status": status,
            "per_batch": per_batch,
            "ipn_callback_url": ipn_callback_url,
        }
        return self._call("POST", "/payouts/bulk", body)["batches"]

    def set_balance(self, currency: str, amount: Decimal | str) -> dict[str, Any]:
        return self._call("POST", "/balance", {"currency": currency, "amount": _amount(amount)})

    def totp(self) -> str:
        return self._call("GET", "/totp")["code"]

    # observation
    def ipn_log(
        self, *, kind: str | None = None, object_id: int | str | None = None
    ) -> list[dict[str, Any]]:
        return self._call("GET", "/ipn", kind=kind, object_id=object_id)["deliveries"]

    def requests(self) -> dict[str, int]:
        return self._call("GET", "/requests")["counts"]

    def reset_requests(self) -> None:
        self._call("POST", "/requests/reset")

    def wait_for(
        self, predicate: Callable[[], Any], *, timeout: float = 5.0, interval: float = 0.02
    ) -> Any:
        """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError("sandbox condition not met in time")
            time.sleep(interval)
