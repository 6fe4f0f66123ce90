"""System checks: a payments app that cannot work says so at start-up."""

from __future__ import annotations

from payments.checks import nowpayments_configured


def ids(settings) -> list[str]:
    return [message.id for message in nowpayments_configured()]


def test_a_missing_api_key_is_an_error_outside_debug(settings):
    settings.DEBUG = False
    settings.PAYMENTS_ENABLED = True
    settings.NOWPAYMENTS_API_KEY = ""
    (message,) = nowpayments_configured()
    assert (message.id, message.level) == ("payments.E001", 40)
    assert "NOWPAYMENTS_API_KEY" in message.msg


def test_in_debug_it_is_a_warning(settings):
    settings.DEBUG = True
    settings.PAYMENTS_ENABLED = True
    settings.NOWPAYMENTS_API_KEY = ""
    (message,) = nowpayments_configured()
    assert message.level == 30


def test_payments_switched_off_need_no_key(settings):
    settings.PAYMENTS_ENABLED = False
    settings.NOWPAYMENTS_API_KEY = ""
    assert ids(settings) == []


def test_payouts_without_credentials_and_ipns_without_a_secret(settings):
    settings.DEBUG = False
    settings.PAYMENTS_ENABLED = True
    settings.NOWPAYMENTS_API_KEY = "key"
    settings.NOWPAYMENTS_IPN_SECRET = ""
    settings.NOWPAYMENTS_EMAIL = ""
    settings.PAYMENTS_PAYOUTS_ENABLED = True
    assert ids(settings) == ["payments.W002", "payments.E003"]


def test_a_missing_secret_key_is_a_deploy_error_and_stops_the_web_process(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "PYTEST_VERSION")}
    env.update(DJANGO_DEBUG="0", NOWPAYMENTS_API_KEY="k", PAYMENTS_VAR_DIR=str(tmp_path))
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert check.returncode != 0
    assert "payments.E004" in check.stderr
    plain = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert plain.returncode == 0, plain.stderr
    web = subprocess.run(
        [sys.executable, "-c", "import project.wsgi"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert web.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in web.stderr
