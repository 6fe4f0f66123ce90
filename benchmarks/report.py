"""Assemble the rows every benchmark wrote (``var/bench/*.json``) into the one markdown table.

Run from the repository root: ``.venv/bin/python benchmarks/report.py`` (``make bench`` runs it
last). Rows come in the issue's order; a script that wrote nothing is named as not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import harness
from results import HEADERS, OUT_DIR, verdict

# The scripts in the order their rows appear (the order, roughly).
SCRIPTS = (
    "settlement",
    "single",
    "ipn_load",
    "poll_credit",
    "polling",
    "scaleout",
    "flat",
    "memory",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=str(OUT_DIR))
    parser.add_argument("--run-id", default="", help="only rows written by this run_all run")
    parser.add_argument("--scripts", nargs="*", default=None, help="the scripts --run-id ran")
    args = parser.parse_args()
    found: dict[str, dict] = {}
    foreign: list[str] = []
    for name in SCRIPTS:
        path = os.path.join(args.dir, f"{name}.json")
        if os.path.exists(path):
            with open(path) as fh:
                body = json.load(fh)
            ran = args.scripts is None or name in args.scripts
            if args.run_id and ran and body.get("run_id") != args.run_id:
                foreign.append(f"{name} ({' '.join(body.get('argv', []))})")
                continue
            found[name] = body
    rows = []
    for name in SCRIPTS:
        for r in found.get(name, {}).get("rows", []):
            rows.append(
                [
                    r["row"],
                    r["figure"],
                    r["ours"],
                    r["baseline"],
                    r["ratio"],
                    r["target"],
                    verdict(r["ok"]),
                    r["load"],
                ]
            )
    rows.sort(key=lambda r: int(r[0]) if str(r[0]).isdigit() else 99)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=harness.REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    quick = any(d.get("quick") for d in found.values())
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"## Benchmarks ({'QUICK sizes' if quick else 'full sizes'}), {stamp}, HEAD {commit}, "
        f"{os.cpu_count()} cores"
    )
    print()
    print(harness.table(HEADERS, rows))
    print()
    print(
        "load / others: the highest 1-min load average during the run / the share of all CPU "
        "time used by processes neither the benchmark's nor PostgreSQL's (PostgreSQL counts "
        "whole, so others' queries are hidden in it: a lower bound)."
    )
    took = ", ".join(f"{n} {d.get('seconds', 0):.0f}s" for n, d in found.items())
    print(f"script times: {took}")
    skipped = {f.split(" ")[0] for f in foreign}
    missing = [n for n in SCRIPTS if n not in found and n not in skipped]
    if missing:
        print(f"NOT MEASURED (the script failed or did not run): {', '.join(missing)}")
    if foreign:
        print(
            "NOT FROM THIS RUN (another run of the script overwrote its rows meanwhile; rerun "
            f"it alone): {', '.join(foreign)}"
        )
    failed = sum(1 for r in rows if r[6] == "FAIL")
    print(f"{len(rows)} rows, {failed} below target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
