"""SandboxServer: the simulator in background threads, for tests, demos and benchmarks."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from sandbox.client import ControlClient
from sandbox.config import SandboxConfig, config_fields
from sandbox.ipn import IpnDispatcher
from sandbox.persist import Persister, load, restore
from sandbox.state import SandboxState
from sandbox.ticker import Ticker
from sandbox.web import SandboxApp, make_server


class SandboxServer:
    """A running NowPayments simulator.

    ``SandboxServer(port=0, api_key="k", ipn_secret="s")`` takes any SandboxConfig field as a
    keyword; port 0 picks a free port. Use as a context manager, or call start() and stop().
    Memory-only unless ``state_file`` is given: then the state is loaded from that JSON file
    (if it exists) and saved to it after changes and on stop().
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: SandboxConfig | None = None,
        **options: Any,
    ) -> None:
        unknown = set(options) - config_fields()
        if unknown:
            raise TypeError(f"unknown sandbox options: {', '.join(sorted(unknown))}")
        self.config = replace(config or SandboxConfig(), **options)
        self.state = SandboxState(self.config)
        self._persister: Persister | None = None
        if self.config.state_file:
            path = Path(self.config.state_file)
            saved = load(path)
            if saved is not None:
                restore(self.state, saved)
            self._persister = Persister(self.state, path)
        self.app = SandboxApp(self.state)
        self._httpd = make_server(host, port, self.app)
        self.host, self.port = self._httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.api_url = self.url + "/v1"
        self.control = ControlClient(self.url)
        self._ticker = Ticker(self.state, self.config.tick_interval)
        self._ipn = IpnDispatcher(self.state)
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxServer:
        if self._thread is not None:
            return self
        self._ticker.start()
        self._ipn.start()
        if self._persister is not None:
            self._persister.start()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"sandbox-http-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.app.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
        self._httpd.server_close()
        self._httpd.close_connections()
        self._ticker.stop()
        self._ipn.stop(timeout=1.0)
        if self._persister is not None:
            self._persister.stop()  # the final flush, after the last change
        self.control.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
