"""``python -m workers.flower``: start Flower behind HTTP basic auth taken from the environment.

Credentials come from ``FLOWER_BASIC_AUTH`` ("user:password[,user2:password2]"). Outside debug
the launcher refuses to start without them; in debug it makes up a password and prints it.
Flower reads ``FLOWER_BASIC_AUTH`` from its environment itself, so the password never appears
on a command line (where ``ps`` would show it to every user of the machine).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Sequence

DEFAULT_PORT = 5555
DEFAULT_ADDRESS = "127.0.0.1"
DEBUG_USER = "flower"
# Over the embedded (filesystem) broker a worker sees a remote-control request and Flower its
# reply only at their next poll of the folder (about a second each): Flower's default 1 s for
# an inspect call then times out and warns "Inspect method ... failed" on every refresh.
FILESYSTEM_INSPECT_TIMEOUT_MS = 5000


class LaunchError(Exception):
    """The launcher cannot start Flower; the message is one sentence for an operator."""


def parse_credentials(raw: str) -> list[str]:
    """Split ``user:pass[,user2:pass2]`` into pairs; refuse an empty user or password."""
    pairs = [item.strip() for item in raw.split(",") if item.strip()]
    for pair in pairs:
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise LaunchError(
                "FLOWER_BASIC_AUTH must be user:password pairs separated by commas, "
                "each with a user and a password."
            )
    return pairs


def resolve_credentials(raw: str, *, debug: bool) -> tuple[list[str], str | None]:
    """The pairs to protect Flower with, and a generated password to show (debug only)."""
    pairs = parse_credentials(raw)
    if pairs:
        return pairs, None
    if not debug:
        raise LaunchError(
            "Flower refuses to start without credentials: set FLOWER_BASIC_AUTH to "
            "user:password (or DJANGO_DEBUG=1 for a generated one)."
        )
    password = secrets.token_urlsafe(18)
    return [f"{DEBUG_USER}:{password}"], password


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.flower",
        description=(
            "Start Flower (celery -A project flower) behind basic auth from FLOWER_BASIC_AUTH. "
            "Unknown options are passed on to Flower, e.g. --url_prefix=flower."
        ),
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("FLOWER_PORT") or DEFAULT_PORT),
        help=f"port to listen on (env FLOWER_PORT, default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--address",
        default=os.environ.get("FLOWER_ADDRESS") or DEFAULT_ADDRESS,
        help=f"address to listen on (env FLOWER_ADDRESS, default {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--wait-for-workers",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="start Flower once a worker answers a ping, or after this long (make run: 60)",
    )
    return parser


def wait_for_workers(seconds: float) -> bool:
    """Ping the workers until one answers (True) or ``seconds`` pass (False).

    Flower inspects the workers as it starts; started beside a worker that is not up yet (make
    run starts everything at once) it warns "Inspect method ... failed" for each method.
    """
    from project.celery import app

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if app.control.ping(timeout=1.0):
            return True
    return False


def flower_argv(port: int, address: str, extra: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "project",
        "flower",
        f"--port={port}",
        f"--address={address}",
        # Every worker sends task events already (CELERY_WORKER_SEND_TASK_EVENTS); Flower's
        # "enable events" broadcast every 5 s would only add a control message per worker.
        "--enable_events=False",
        *extra,
    ]


def _load_settings() -> tuple[str, bool, str]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.conf import settings

    try:
        auth, debug = str(settings.FLOWER_BASIC_AUTH or ""), bool(settings.DEBUG)
        return auth, debug, str(settings.CELERY_BROKER_URL or "")
    except RuntimeError as exc:  # settings refuse to load, e.g. no DJANGO_SECRET_KEY
        raise LaunchError(str(exc)) from None


def broker_options(broker_url: str, extra: Sequence[str]) -> list[str]:
    """Flower options the broker calls for, unless given on the command line."""
    given = any(arg.lstrip("-").startswith("inspect_timeout") for arg in extra)
    if broker_url.startswith("filesystem://") and not given:
        return [f"--inspect_timeout={FILESYSTEM_INSPECT_TIMEOUT_MS}"]
    return []


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    try:
        raw, debug, broker_url = _load_settings()
        pairs, generated = resolve_credentials(raw, debug=debug)
    except LaunchError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    if generated is not None:
        sys.stdout.write(
            f"Flower (debug): no FLOWER_BASIC_AUTH set, generated user {DEBUG_USER!r} "
            f"password {generated!r}\n"
        )
        sys.stdout.flush()
    if args.wait_for_workers > 0 and not wait_for_workers(args.wait_for_workers):
        sys.stdout.write(f"Flower: no worker answered in {args.wait_for_workers:g} s; starting.\n")
        sys.stdout.flush()
    os.environ["FLOWER_BASIC_AUTH"] = ",".join(pairs)
    command = flower_argv(args.port, args.address, [*broker_options(broker_url, extra), *extra])
    os.execv(command[0], command)  # noqa: S606 - our own interpreter, fixed arguments
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main())
