"""The rows each benchmark contributes to the one table, the machine's load during a run, JSON.

Every script measures some figures against a baseline taken in the same run, wraps each run in
a ``LoadMeter`` (1-min load average and the CPU share of processes that are neither ours nor
PostgreSQL), and writes its rows to ``var/bench/<script>.json``; ``report.py`` assembles them.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness

OUT_DIR = harness.REPO / "var" / "bench"
STARTED = time.time()  # when the script started (this module is imported at its top)
# ``run_all.py`` names its run, so the table never mixes in rows another run wrote meanwhile.
RUN_ID = os.environ.get("BENCH_RUN_ID", "")


def _tree_cpu(root: int) -> float:
    """CPU seconds of ``root``'s tree, reaped descendants included (cutime + cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in harness.process_tree(root):
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        total += sum(int(v) for v in fields[11:15]) / tick
    return total


@dataclass
class Load:
    """What the machine did during one run: the 1-min load average (highest seen) and the share
    of all CPU time used by processes other than this benchmark's and PostgreSQL's."""

    load1: float = 0.0
    other_share: float = 0.0
    busy_share: float = 0.0
    postgres_share: float = 0.0
    wall: float = 0.0

    def text(self) -> str:
        return f"{self.load1:.2f} / {self.other_share * 100:.0f}%"


class LoadMeter:
    """``with LoadMeter() as load: ...``; afterwards ``load.result`` is a ``Load``.

    "Ours" is this process and every process it started (live or reaped); PostgreSQL counts
    as a whole (all databases), so another client's queries count as ours: the share is a
    lower bound of the disturbance.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.result = Load()
        self._stop = threading.Event()
        self._peak = 0.0

    def __enter__(self) -> LoadMeter:
        self._t0 = time.monotonic()
        self._machine0 = harness.machine_cpu()
        self._ours0 = _tree_cpu(os.getpid())
        self._pg0 = harness.postgres_cpu_seconds()
        self._peak = os.getloadavg()[0]
        self._thread = threading.Thread(target=self._sample, name="load", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, os.getloadavg()[0])

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        wall = time.monotonic() - self._t0
        busy0, total0 = self._machine0
        busy1, total1 = harness.machine_cpu()
        busy, total = busy1 - busy0, max(total1 - total0, 1e-9)
        ours = _tree_cpu(os.getpid()) - self._ours0
        pg = harness.postgres_cpu_seconds() - self._pg0
        self._peak = max(self._peak, os.getloadavg()[0])
        self.result = Load(
            load1=self._peak,
            other_share=max(busy - ours - pg, 0.0) / total,
            busy_share=busy / total,
            postgres_share=pg / total,
            wall=wall,
        )


@dataclass
class Row:
    """One line of the table: a figure, its same-run baseline, the ratio and the target."""

    row: str  # the row number, "1" .. "8"
    figure: str
    ours: str
    baseline: str = "-"
    ratio: str = "-"
    target: str = "-"
    ok: bool | None = None
    load: str = "-"
    note: str = ""


@dataclass
class Results:
    script: str
    quick: bool
    rows: list[Row] = field(default_factory=list)
    started: float = STARTED
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def write(self) -> Path:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUT_DIR / f"{self.script}.json"
        body = {
            "script": self.script,
            "quick": self.quick,
            "started": self.started,
            "seconds": time.time() - self.started,
            "run_id": RUN_ID,
            "argv": sys.argv[1:],
            "rows": [asdict(r) for r in self.rows],
            "details": self.details,
        }
        path.write_text(json.dumps(body, indent=1, default=str))
        return path

    def print_section(self) -> None:
        print()
        print(markdown(self.rows, title=f"### {self.script}: rows for the table"))


HEADERS = ("#", "figure", "ours", "baseline (same run)", "ratio", "target", "pass", "load / others")


def markdown(rows: list[Row], *, title: str = "") -> str:
    body = [
        [r.row, r.figure, r.ours, r.baseline, r.ratio, r.target, verdict(r.ok), r.load]
        for r in rows
    ]
    return harness.table(HEADERS, body, title=title)


def verdict(ok: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "-"}[ok]


def ratio(ours: float, base: float) -> float:
    return ours / base if base else float("nan")
