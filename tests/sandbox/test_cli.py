"""``python -m sandbox`` as a real process: prints its URL, answers, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from sandbox.config import config_from_args

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_module_runs_and_stops_on_sigterm() -> None:
    port = _free_port()
    env = {**os.environ, "SANDBOX_API_KEY": "from-env", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip().endswith(f"http://127.0.0.1:{port}")
        session = requests.Session()
        session.trust_env = False
        url = f"http://127.0.0.1:{port}"
        assert session.get(url + "/v1/status", timeout=5).json() == {"message": "OK"}
        assert session.get(url + "/v1/currencies", headers={"x-api-key": "from-env"}).ok
        session.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_flags_override_environment_and_defaults() -> None:
    host, port, config = config_from_args(
        ["--port", "9999", "--ipn-secret", "", "--ipn-retries", "5"],
        {"SANDBOX_API_KEY": "env-key", "SANDBOX_IPN_SECRET": "env-secret", "SANDBOX_JWT_TTL": "60"},
    )
    assert (host, port) == ("127.0.0.1", 9999)
    assert config.api_key == "env-key"
    assert config.ipn_secret == ""
    assert config.ipn_retries == 5
    assert config.jwt_ttl == 60
    assert config.email == "merchant@sandbox.local"
    assert config.totp_secret == "JBSWY3DPEHPK3PXP"
    assert config.step_seconds == 5
    assert config.ipn_retry_interval == 60
