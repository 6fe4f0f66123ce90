"""How ``make run`` (scripts/run.py) runs its processes: honcho, stopped cleanly and quietly.

The stop: SIGTERM to each process alone, SIGKILL to what is left; while stopping, one line at
the end instead of honcho's two per process. Ctrl-C: on a terminal the run takes the foreground
in a process group of its own, so the signal reaches it and not ``make``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from typing import Any

from honcho.compat import ProcessManager
from honcho.manager import Manager
from honcho.printer import Printer


def say(text: str) -> None:
    sys.stdout.write(f"[make run] {text}\n")
    sys.stdout.flush()


class StopLeaderFirst(ProcessManager):
    """SIGTERM to each process alone, SIGKILL to its whole process group.

    honcho's own manager sends SIGTERM to every process group, which also hits Celery's pool
    children and gunicorn's workers directly: Celery then loses the tasks they were running and
    hangs until it is killed. Sent to the parent alone, SIGTERM makes it stop its children in
    order (a warm shutdown). Whatever is left when the manager gives up is killed as a group.
    """

    def __init__(self) -> None:
        self.groups: set[int] = set()

    def terminate(self, pid: int) -> None:
        self.groups.add(pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)

    def kill(self, pid: int) -> None:
        self.groups.add(pid)
        super().kill(pid)

    def kill_leftovers(self) -> None:
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


class Run(Manager):
    """honcho's manager, quiet while it stops: one line at the end instead of two per process.

    While stopping, honcho's own "SIGINT received", "sending SIGTERM to ..." and "... stopped
    (rc=0)" lines are left out; a process that had to be killed or failed is still reported.
    """

    def __init__(self) -> None:
        super().__init__(Printer(sys.stdout))
        self.stopper = StopLeaderFirst()
        self._procmgr = self.stopper  # honcho has no public hook for how it stops processes
        self.signalled: str | None = None  # the signal that asked everything to stop
        self.stopped: dict[str, int] = {}
        self.names: list[str] = []

    def _system_print(self, data: str) -> None:
        received = re.fullmatch(r"(SIG\w+) received\n?", data)
        if received and not self.stopped:  # asked to stop, not stopping after a failure
            self.signalled = received.group(1)
            return
        stopped = re.fullmatch(r"(\S+) stopped \(rc=(-?\d+)\)\n?", data)
        if stopped:
            self.stopped[stopped.group(1)] = int(stopped.group(2))
        if self.signalled is not None:
            clean = stopped and int(stopped.group(2)) in (0, -signal.SIGTERM)
            if clean or data.startswith("sending SIGTERM"):
                return
        super()._system_print(data)

    def add_process(self, name: str, cmd: str, **kwargs: Any) -> Any:
        self.names.append(name)
        return super().add_process(name, cmd, **kwargs)

    def summary(self) -> str:
        """One line: what stopped (in the order they started), and any that did not cleanly."""
        names = [name for name in self.names if name in self.stopped]
        unclean = [
            f"{name} (rc={rc})"
            for name, rc in self.stopped.items()
            if rc not in (0, -signal.SIGTERM)
        ]
        text = f"stopped {', '.join(names)}"
        return text + (f"; not cleanly: {', '.join(unclean)}." if unclean else ".")


class Foreground:
    """Ctrl-C for this run alone: its own process group, in the terminal's foreground.

    A terminal sends SIGINT to its whole foreground group, ``make`` included; make then dies of
    it (exit 130, and ``make: *** Error 130`` if its child exited non-zero) however cleanly the
    run stops. Moved to a group of its own and handed the terminal, the run alone gets the
    signal, stops everything, gives the terminal back and exits 0, and so does make.
    """

    def __init__(self) -> None:
        self.fd: int | None = None
        self.previous = 0

    def take(self) -> None:
        try:
            fd = sys.stdin.fileno()
            if not os.isatty(fd) or os.tcgetpgrp(fd) != os.getpgrp():
                return  # no terminal, or not in its foreground (a background job, CI)
            previous = os.getpgrp()
            os.setpgid(0, 0)
            self._set(fd, os.getpgrp())
        except (OSError, ValueError):
            return
        self.fd, self.previous = fd, previous

    def give_back(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self._set(self.fd, self.previous)
            self.fd = None

    @staticmethod
    def _set(fd: int, group: int) -> None:
        # A background group changing the foreground gets SIGTTOU unless it ignores it.
        previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(fd, group)
        finally:
            signal.signal(signal.SIGTTOU, previous)


SUPERVISOR_PID = os.getpid()  # honcho's helper processes are forks that inherit the handlers


def on_hangup_or_quit(signum: int, frame: object) -> None:
    """A closed terminal (SIGHUP) or Ctrl-\\ stops the run like SIGTERM (honcho's handler)."""
    if os.getpid() == SUPERVISOR_PID:
        os.kill(os.getpid(), signal.SIGTERM)


def on_suspend(signum: int, frame: object) -> None:
    # Ctrl-Z would stop this supervisor but not the processes it runs, and leave the terminal
    # with neither: it is not supported.
    if os.getpid() == SUPERVISOR_PID:
        say("Ctrl-Z does not pause the run; Ctrl-C stops it.")
