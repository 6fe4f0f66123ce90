"""The payment status machine: case auto-play, expiry, control actions, re-deposits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandbox import SandboxServer
from sandbox.client import ControlError
from tests.sandbox.conftest import Api


def _statuses_over_time(sandbox: SandboxServer, api: Api, payment_id: str, steps: int) -> list[str]:
    seen = [api.status(payment_id)["payment_status"]]
    for _ in range(steps):
        sandbox.control.advance_clock(5)
        seen.append(api.status(payment_id)["payment_status"])
    return seen


def test_case_success_plays_out_on_the_clock(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment(case="success")
    seen = _statuses_over_time(sandbox, api, payment["payment_id"], 5)
    assert seen == ["waiting", "confirming", "confirmed", "sending", "finished", "finished"]
    final = api.status(payment["payment_id"])
    assert final["actually_paid"] == payment["pay_amount"]
    assert final["payin_hash"]
    assert final["payout_hash"]
    assert final["outcome_amount"] < final["actually_paid"]


def test_case_partially_paid(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment(case="partially_paid")
    seen = _statuses_over_time(sandbox, api, payment["payment_id"], 4)
    assert seen == ["waiting", "confirming", "confirmed", "partially_paid", "partially_paid"]
    final = api.status(payment["payment_id"])
    assert Decimal(0) < final["actually_paid"] < final["pay_amount"]


@pytest.mark.parametrize("case", ["failed", "failure"])
def test_case_failed_and_failure(sandbox: SandboxServer, api: Api, case: str) -> None:
    payment = api.create_payment(case=case)
    seen = _statuses_over_time(sandbox, api, payment["payment_id"], 3)
    assert seen == ["waiting", "confirming", "failed", "failed"]


def test_case_expired(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment(case="expired")
    assert _statuses_over_time(sandbox, api, payment["payment_id"], 2) == [
        "waiting",
        "expired",
        "expired",
    ]


def test_case_steps_use_step_seconds() -> None:
    with SandboxServer(step_seconds=0.15, api_key="k") as server:
        client = Api(server.url, api_key="k")
        payment = client.create_payment(case="success")
        server.control.wait_for(
            lambda: client.status(payment["payment_id"])["payment_status"] == "finished",
            timeout=5,
        )


def test_without_case_a_payment_waits(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment()
    sandbox.control.advance_clock(3600)
    assert api.status(payment["payment_id"])["payment_status"] == "waiting"


def test_standard_payment_expires_after_seven_days(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment()
    sandbox.control.advance_clock(7 * 86400 - 60)
    assert api.status(payment["payment_id"])["payment_status"] == "waiting"
    sandbox.control.advance_clock(61)
    status = api.status(payment["payment_id"])
    assert status["payment_status"] == "expired"
    assert status["updated_at"] == payment["valid_until"]


@pytest.mark.parametrize("flag", ["is_fixed_rate", "is_fee_paid_by_user"])
def test_fixed_rate_payment_expires_after_20_minutes(
    sandbox: SandboxServer, api: Api, flag: str
) -> None:
    payment = api.create_payment(**{flag: True})
    sandbox.control.advance_clock(19 * 60)
    assert api.status(payment["payment_id"])["payment_status"] == "waiting"
    sandbox.control.advance_clock(61)
    assert api.status(payment["payment_id"])["payment_status"] == "expired"


def test_paid_payment_does_not_expire(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment(is_fixed_rate=True)
    sandbox.control.pay(payment["payment_id"])
    sandbox.control.advance_clock(3600)
    assert api.status(payment["payment_id"])["payment_status"] == "confirming"


def test_pay_then_advance_step_by_step(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment()
    pid = payment["payment_id"]
    paid = sandbox.control.pay(pid, hash="0xfeed")
    assert paid["payment_status"] == "confirming"
    assert paid["payin_hash"] == "0xfeed"
    assert paid["actually_paid"] == payment["pay_amount"]
    steps = [sandbox.control.advance(pid)["payment_status"] for _ in range(3)]
    assert steps == ["confirmed", "sending", "finished"]
    with pytest.raises(ControlError) as error:
        sandbox.control.advance(pid)
    assert error.value.status == 409


def test_underpaid_payment_ends_partially_paid(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment()
    pid = payment["payment_id"]
    sandbox.control.pay(pid, amount=payment["pay_amount"] / 2)
    assert sandbox.control.advance(pid)["payment_status"] == "confirmed"
    assert sandbox.control.advance(pid)["payment_status"] == "partially_paid"
    # the merchant may still mark it finished by hand
    assert sandbox.control.advance(pid, "finished")["payment_status"] == "finished"


def test_underpaid_cannot_be_advanced_to_finished_directly(
    sandbox: SandboxServer, api: Api
) -> None:
    payment = api.create_payment()
    sandbox.control.pay(payment["payment_id"], amount="0.0001")
    with pytest.raises(ControlError) as error:
        sandbox.control.advance(payment["payment_id"], "finished")
    assert error.value.status == 409


def test_advance_to_target_walks_every_status(sandbox: SandboxServer, api: Api, receiver) -> None:
    payment = api.create_payment(ipn_callback_url=receiver.url)
    done = sandbox.control.advance(payment["payment_id"], "finished")
    assert done["payment_status"] == "finished"
    assert done["actually_paid"] == payment["pay_amount"]
    log = sandbox.control.wait_for(
        lambda: len(sandbox.control.ipn_log()) == 4 and sandbox.control.ipn_log()
    )
    assert [entry["status"] for entry in log] == ["confirming", "confirmed", "sending", "finished"]


def test_advance_to_partially_paid_from_waiting(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment()
    done = sandbox.control.advance(payment["payment_id"], "partially_paid")
    assert done["payment_status"] == "partially_paid"
    assert done["actually_paid"] < payment["pay_amount"]


def test_complete_expire_refund(sandbox: SandboxServer, api: Api) -> None:
    finished = sandbox.control.complete(api.create_payment()["payment_id"])
    assert finished["payment_status"] == "finished"
    assert sandbox.control.refund(finished["payment_id"])["payment_status"] == "refunded"
    waiting = api.create_payment()
    assert sandbox.control.expire(waiting["payment_id"])["payment_status"] == "expired"
    with pytest.raises(ControlError) as error:
        sandbox.control.refund(waiting["payment_id"])
    assert error.value.status == 409
    with pytest.raises(ControlError) as error:
        sandbox.control.expire(finished["payment_id"])
    assert error.value.status == 409


def test_advance_to_failed(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment()
    assert sandbox.control.advance(payment["payment_id"], "failed")["payment_status"] == "failed"


def test_control_errors(sandbox: SandboxServer, api: Api) -> None:
    with pytest.raises(ControlError) as error:
        sandbox.control.pay(123)
    assert error.value.status == 404
    payment = api.create_payment()
    with pytest.raises(ControlError) as error:
        sandbox.control.advance(payment["payment_id"], "flying")
    assert error.value.status == 400
    with pytest.raises(ControlError) as error:
        sandbox.control.pay(payment["payment_id"], amount="-1")
    assert error.value.status == 400


def test_control_action_stops_autoplay(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment(case="success")
    sandbox.control.pay(payment["payment_id"])
    sandbox.control.advance_clock(60)
    assert api.status(payment["payment_id"])["payment_status"] == "confirming"


def test_redeposit_creates_a_child(sandbox: SandboxServer, api: Api) -> None:
    parent = api.create_payment(pay_currency="xrp", price_amount=50, order_id="A-1")
    with pytest.raises(ControlError):
        sandbox.control.redeposit(parent["payment_id"], "1")  # still waiting: use pay
    sandbox.control.complete(parent["payment_id"])
    child = sandbox.control.redeposit(parent["payment_id"], "12.5")
    assert child["parent_payment_id"] == int(parent["payment_id"])
    assert child["origin_type"] == "REPEATED"
    assert child["payment_status"] == "confirming"
    assert child["actually_paid"] == Decimal("12.5")
    assert child["pay_address"] == parent["pay_address"]
    assert child["payin_extra_id"] == parent["payin_extra_id"]
    assert child["order_id"] == "A-1"
    status = api.status(parent["payment_id"])
    assert status["payment_extra_ids"] == [child["payment_id"]]
    assert status["payment_status"] == "finished"
    seen = [api.status(child["payment_id"])["payment_status"]]
    for _ in range(3):
        sandbox.control.advance_clock(5)
        seen.append(api.status(child["payment_id"])["payment_status"])
    assert seen == ["confirming", "confirmed", "partially_paid", "partially_paid"]


def test_redeposit_status_quirk_finished(sandbox: SandboxServer, api: Api) -> None:
    sandbox.control.set_quirks(redeposit_status="finished")
    parent = api.create_payment()
    sandbox.control.complete(parent["payment_id"])
    child = sandbox.control.redeposit(parent["payment_id"], "0.001")
    sandbox.control.advance_clock(20)
    assert api.status(child["payment_id"])["payment_status"] == "finished"


def test_balance_follows_payments(sandbox: SandboxServer, api: Api) -> None:
    before = api.get("/v1/balance").json(parse_float=Decimal)["ltc"]
    payment = api.create_payment(pay_currency="ltc")
    sandbox.control.pay(payment["payment_id"])
    pending = api.get("/v1/balance").json(parse_float=Decimal)["ltc"]
    assert pending["pendingAmount"] > 0
    assert pending["amount"] == before["amount"]
    sandbox.control.advance(payment["payment_id"], "finished")
    after = api.get("/v1/balance").json(parse_float=Decimal)["ltc"]
    outcome = api.status(payment["payment_id"])["outcome_amount"]
    assert after == {"amount": before["amount"] + outcome, "pendingAmount": 0}


def test_reset_forgets_everything(sandbox: SandboxServer, api: Api) -> None:
    payment = api.create_payment()
    sandbox.control.set_quirks(pay_amount_as_string=True)
    sandbox.control.advance_clock(100)
    sandbox.control.reset()
    assert sandbox.control.payments() == []
    assert sandbox.control.quirks()["pay_amount_as_string"] is False
    assert sandbox.control.clock()["offset_ms"] == 0
    assert api.get(f"/v1/payment/{payment['payment_id']}").status_code == 404
    assert int(api.create_payment()["payment_id"]) > int(payment["payment_id"])  # ids never reused
