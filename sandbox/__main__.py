"""``python -m sandbox --port 8765``: run the simulator until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from sandbox.config import config_from_args
from sandbox.server import SandboxServer


def main(argv: Sequence[str] | None = None) -> int:
    host, port, config = config_from_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = SandboxServer(host=host, port=port, config=config).start()
    if config.state_file:
        logging.getLogger("sandbox").info("state kept in %s", config.state_file)
    sys.stdout.write(f"NowPayments sandbox listening on {server.url}\n")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
