"""Sandbox configuration: defaults, environment fallbacks and the command-line parser."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

DEFAULT_PORT = 8765


@dataclass(frozen=True)
class SandboxConfig:
    """Everything a SandboxServer needs to know; secrets here are the sandbox's own."""

    api_key: str = "sandbox-api-key"
    email: str = "merchant@sandbox.local"
    password: str = "sandbox-password"  # noqa: S105 - a documented sandbox default
    ipn_secret: str = "sandbox-ipn-secret"  # noqa: S105 - empty string => no IPNs are sent
    totp_secret: str = "JBSWY3DPEHPK3PXP"  # noqa: S105 - base32, checked with pyotp
    ipn_retries: int = 3
    ipn_retry_interval: float = 60.0
    ipn_timeout: float = 3.0
    step_seconds: float = 5.0
    jwt_ttl: float = 300.0
    tick_interval: float = 0.1
    state_file: str | None = None  # JSON file kept across restarts; None/"" = memory only


# option name, environment variable, type, help
_OPTIONS: tuple[tuple[str, str, type, str], ...] = (
    ("api_key", "SANDBOX_API_KEY", str, "x-api-key the API accepts"),
    ("email", "SANDBOX_EMAIL", str, "e-mail for POST /v1/auth"),
    ("password", "SANDBOX_PASSWORD", str, "password for POST /v1/auth"),
    ("ipn_secret", "SANDBOX_IPN_SECRET", str, "IPN HMAC secret; empty disables IPNs"),
    ("totp_secret", "SANDBOX_TOTP_SECRET", str, "base32 TOTP secret for payout 2FA"),
    ("ipn_retries", "SANDBOX_IPN_RETRIES", int, "extra IPN sends after a failed one"),
    ("ipn_retry_interval", "SANDBOX_IPN_RETRY_INTERVAL", float, "seconds between IPN retries"),
    ("step_seconds", "SANDBOX_STEP_SECONDS", float, "seconds per automatic status step"),
    ("jwt_ttl", "SANDBOX_JWT_TTL", float, "JWT lifetime in seconds of the sandbox clock"),
    (
        "state_file",
        "SANDBOX_STATE_FILE",
        str,
        "JSON file that keeps the state across restarts, e.g. var/sandbox-state.json "
        "(empty: memory only)",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local simulator of the NowPayments REST API (see sandbox/README.md).",
    )
    parser.add_argument("--host", default=os.environ.get("SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("SANDBOX_PORT", DEFAULT_PORT))
    )
    defaults = SandboxConfig()
    for name, env, kind, help_text in _OPTIONS:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=None,
            help=f"{help_text} (env {env}, default {getattr(defaults, name)!r})",
        )
    return parser


def config_from_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, int, SandboxConfig]:
    """Parse the command line; unset flags fall back to the environment, then the defaults."""
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    values: dict[str, object] = {}
    for name, env_name, kind, _ in _OPTIONS:
        value = getattr(args, name)
        if value is None and env_name in env:
            value = kind(env[env_name])
        if value is not None:
            values[name] = value
    return args.host, args.port, SandboxConfig(**values)


def config_fields() -> frozenset[str]:
    return frozenset(f.name for f in fields(SandboxConfig))
