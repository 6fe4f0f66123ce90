"""System checks: a payments app that cannot work says so at start-up."""

from __future__ import annotations

import pytest

from payments.checks import nowpayments_configured
from payments.config import require_configuration
from payments.errors import ConfigurationError


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


def test_missing_key_and_secret_are_deploy_errors_and_stop_the_web_process(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "PYTEST_VERSION")}
    env.pop("NOWPAYMENTS_API_KEY", None)
    env.update(DJANGO_DEBUG="0", PAYMENTS_VAR_DIR=str(tmp_path))
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert check.returncode != 0
    assert "payments.E001" in check.stderr
    assert "payments.E004" in check.stderr
    plain = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert plain.returncode == 0, "commands that serve nothing need neither"
    for extra, reason in (
        ({}, "NOWPAYMENTS_API_KEY"),
        ({"NOWPAYMENTS_API_KEY": "k"}, "SECRET_KEY"),
    ):
        web = subprocess.run(
            [sys.executable, "-c", "import project.wsgi"],
            capture_output=True,
            text=True,
            env={**env, **extra},
            check=False,
        )
        assert web.returncode != 0
        assert reason in web.stderr


def test_web_and_workers_refuse_to_start_half_configured_outside_debug(settings):
    settings.PAYMENTS_ENABLED = True
    settings.NOWPAYMENTS_API_KEY = ""
    settings.DEBUG = False
    with pytest.raises(ConfigurationError, match="NOWPAYMENTS_API_KEY"):
        require_configuration()
    settings.DEBUG = True
    require_configuration()  # a local run still starts, with a warning in the log


def test_a_worker_without_a_nowpayments_key_stops_with_the_reason(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    celery = Path(__import__("sys").executable).parent / "celery"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    env.pop("NOWPAYMENTS_API_KEY", None)
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="s" * 50,
        PAYMENTS_VAR_DIR=str(tmp_path),
        CELERY_BROKER_URL="redis://127.0.0.1:6379/12",
    )
    worker = subprocess.run(
        [str(celery), "-A", "project", "worker", "-c", "1", "--without-mingle"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert worker.returncode != 0
    assert "The worker cannot start: NOWPAYMENTS_API_KEY is empty" in worker.stderr
