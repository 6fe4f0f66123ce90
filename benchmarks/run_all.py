"""``make bench``: run every benchmark script one after another, then print the one table.

``--quick`` (``make bench QUICK=1``) runs the same rows at smaller sizes (< ~5 minutes);
the full sizes take < ~25 minutes on a quiet 2-core machine. Each script's own output is
shown as it runs; the rows go to ``var/bench/*.json`` and ``report.py`` prints the table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid

import harness
from report import SCRIPTS
from results import OUT_DIR

# Arguments of each script at each size.
SIZES: dict[str, dict[str, list[str]]] = {
    "settlement": {"full": [], "quick": ["--payments", "4000", "--users", "200"]},
    "single": {"full": [], "quick": ["--payments", "400"]},
    "ipn_load": {"full": [], "quick": ["--duration", "5", "--credit-paced", "50"]},
    "poll_credit": {"full": [], "quick": ["--payments", "6"]},
    "polling": {"full": [], "quick": ["--payments", "2000", "--baseline-sample", "200"]},
    "scaleout": {"full": [], "quick": ["--payments", "3000", "--refreshes", "300"]},
    "flat": {"full": [], "quick": ["--large", "100000"]},
    "memory": {"full": [], "quick": ["--payments", "30000"]},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, help="run just these scripts")
    args = parser.parse_args()
    size = "quick" if args.quick else "full"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    chosen = args.only or list(SCRIPTS)
    if not args.only:
        for old in OUT_DIR.glob("*.json"):
            old.unlink()
    started = time.monotonic()
    run_id = uuid.uuid4().hex
    os.environ["BENCH_RUN_ID"] = run_id
    codes = {}
    for name in chosen:
        argv = [sys.executable, str(harness.REPO / "benchmarks" / f"{name}.py"), *SIZES[name][size]]
        if args.quick:
            argv.append("--quick")
        print(f"\n######## {name} ({size}) ########", flush=True)
        t = time.monotonic()
        codes[name] = subprocess.run(argv, cwd=harness.REPO, check=False).returncode
        print(f"######## {name}: exit {codes[name]} in {time.monotonic() - t:.0f}s", flush=True)
    print(f"\n######## all scripts: {time.monotonic() - started:.0f}s ########\n", flush=True)
    report = [sys.executable, str(harness.REPO / "benchmarks" / "report.py"), "--run-id", run_id]
    report += ["--scripts", *chosen]
    subprocess.run(report, check=False)
    bad = {n: c for n, c in codes.items() if c}
    if bad:
        print(f"scripts that exited non-zero: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
