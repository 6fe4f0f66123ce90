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


# --- check --deploy: payouts complete, no sandbox secrets, no plain http (as a subprocess) ----

# A production-shaped environment that passes: https everywhere, real-looking secrets.
_PRODUCTION_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "a-production-secret-key-" + "x" * 40,
    "PAYMENTS_ENABLED": "1",
    "NOWPAYMENTS_API_URL": "https://api.nowpayments.io/v1",
    "NOWPAYMENTS_API_KEY": "NP-REAL-KEY-1234",
    "NOWPAYMENTS_IPN_SECRET": "ipn-secret-from-the-dashboard",
    "PAYMENTS_PUBLIC_BASE_URL": "https://pay.example.com",
    "PAYMENTS_PAYOUTS_ENABLED": "1",
    "NOWPAYMENTS_EMAIL": "treasury@example.com",
    "NOWPAYMENTS_PASSWORD": "a-long-dashboard-password",
    "NOWPAYMENTS_TOTP_SECRET": "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU",
}


def _demo_secrets() -> dict[str, str]:
    """The NowPayments secrets `make run` gives the sandbox and the app (scripts/run.py)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "run.py"
    spec = importlib.util.spec_from_file_location("run_script_for_checks", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.SANDBOX_SECRETS)


def _check_deploy(tmp_path, **overrides: str):
    import os
    import subprocess
    import sys

    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTEST_VERSION" and not k.startswith(("NOWPAYMENTS_", "PAYMENTS_", "DJANGO_"))
    }
    env.update(_PRODUCTION_ENV, PAYMENTS_VAR_DIR=str(tmp_path))
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_a_complete_production_config_passes_check_deploy(tmp_path):
    check = _check_deploy(tmp_path)
    assert check.returncode == 0, check.stderr
    assert "payments.E" not in check.stderr


@pytest.mark.parametrize(
    ("overrides", "sentence"),
    [
        pytest.param(
            {"NOWPAYMENTS_TOTP_SECRET": ""},
            "PAYMENTS_PAYOUTS_ENABLED is on but NOWPAYMENTS_TOTP_SECRET is empty",
            id="payouts-without-totp",
        ),
        pytest.param(
            {"NOWPAYMENTS_EMAIL": "", "NOWPAYMENTS_PASSWORD": ""},
            "PAYMENTS_PAYOUTS_ENABLED is on but NOWPAYMENTS_EMAIL / NOWPAYMENTS_PASSWORD are empty",
            id="payouts-without-login",
        ),
        pytest.param(
            {"NOWPAYMENTS_TOTP_SECRET": "not-base32!"},
            "PAYMENTS_PAYOUTS_ENABLED is on but NOWPAYMENTS_TOTP_SECRET is not a valid base32",
            id="payouts-with-a-bad-totp",
        ),
        pytest.param(
            {"NOWPAYMENTS_API_KEY": "sandbox-api-key"},
            "NOWPAYMENTS_API_KEY is the NowPayments sandbox's default value",
            id="sandbox-api-key",
        ),
        pytest.param(
            {"NOWPAYMENTS_IPN_SECRET": "sandbox-ipn-secret"},
            "NOWPAYMENTS_IPN_SECRET is the NowPayments sandbox's default value",
            id="sandbox-ipn-secret",
        ),
        pytest.param(
            {"NOWPAYMENTS_PASSWORD": "sandbox-password"},
            "NOWPAYMENTS_PASSWORD is the NowPayments sandbox's default value",
            id="sandbox-password",
        ),
        pytest.param(
            {"NOWPAYMENTS_TOTP_SECRET": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"},
            "NOWPAYMENTS_TOTP_SECRET is the NowPayments sandbox's default value",
            id="sandbox-totp",
        ),
        pytest.param(
            {"NOWPAYMENTS_API_URL": "http://api.nowpayments.io/v1"},
            "NOWPAYMENTS_API_URL is a plain-http URL",
            id="http-provider",
        ),
        pytest.param(
            {"PAYMENTS_PUBLIC_BASE_URL": "http://pay.example.com"},
            "PAYMENTS_PUBLIC_BASE_URL is a plain-http URL",
            id="http-callback",
        ),
    ],
)
def test_check_deploy_refuses(tmp_path, overrides, sentence):
    check = _check_deploy(tmp_path, **overrides)
    assert check.returncode != 0
    assert sentence in check.stderr


def test_in_debug_the_sandbox_over_http_passes_but_incomplete_payouts_warn(tmp_path):
    """`make run` and the e2e processes: DJANGO_DEBUG=1 against the sandbox over http."""
    sandbox = {f"NOWPAYMENTS_{name}": value for name, value in _demo_secrets().items()}
    debug = {
        "DJANGO_DEBUG": "1",
        "NOWPAYMENTS_API_URL": "http://127.0.0.1:8765/v1",
        "PAYMENTS_PUBLIC_BASE_URL": "http://127.0.0.1:8000",
    }
    check = _check_deploy(tmp_path, **debug, **sandbox)
    assert check.returncode == 0, check.stderr
    assert "payments.E00" not in check.stderr
    incomplete = _check_deploy(tmp_path, **debug, **{**sandbox, "NOWPAYMENTS_TOTP_SECRET": ""})
    assert incomplete.returncode == 0, incomplete.stderr
    assert "NOWPAYMENTS_TOTP_SECRET is empty" in incomplete.stderr  # a warning in debug


def test_the_refused_secrets_are_the_sandboxs_defaults():
    from payments.checks import SANDBOX_SECRETS as REFUSED
    from sandbox.config import SandboxConfig

    demo = _demo_secrets()
    defaults = SandboxConfig()
    for name in ("api_key", "password", "ipn_secret", "totp_secret"):
        setting = f"NOWPAYMENTS_{name.upper()}"
        assert getattr(defaults, name) in REFUSED[setting]
        assert demo[name.upper()] in REFUSED[setting]
