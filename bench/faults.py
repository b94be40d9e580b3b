"""Fault injection, long form: many runs, each fault over and over, one table at the end.

    python -m bench.faults [--runs 500] [--minutes 5] [--faults sigkill,pg-terminate,...]
                           [--seed 1] [--workers 3] [--postgres-url URL] [--database faults]

Starts its own redis-server on a free port, uses its own database on the PostgreSQL server of
--postgres-url, three `celery worker -c 1` processes, an SMTP sink and a Resend API stub. Runs
every fault scenario of bench/faultlab/scenarios.py with --runs runs, then again with new seeds
while --minutes last (at least once), and prints a Markdown table. Exits 1 if a run or an
email was lost or an email was duplicated under another id.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.faultlab.lab import Lab, Timing
from bench.faultlab.report import Result, merge, table
from bench.faultlab.scenarios import SCENARIOS, run_scenario


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--faults", default="all", help=f"comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1/test")
    parser.add_argument("--database", default="faults")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--lease-seconds", type=float, default=8)
    parser.add_argument(
        "--stale-seconds",
        type=float,
        default=15,
        help="above the longest queue backlog, or the sweeper's re-sends flood the queue",
    )
    args = parser.parse_args()
    names = list(SCENARIOS) if args.faults == "all" else args.faults.split(",")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    # Stopped by a signal, still stop our Redis and workers (a background job ignores SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    rows: dict[str, list[Result]] = {name: [] for name in names}
    workdir = Path(tempfile.mkdtemp(prefix="faults-"))
    timing = Timing(lease_seconds=args.lease_seconds, stale_seconds=args.stale_seconds)
    lab = Lab(workdir, args.postgres_url, args.database, workers=args.workers, timing=timing)
    patience = max(90.0, args.runs * 0.6)
    deadline = time.monotonic() + args.minutes * 60
    try:
        round_ = 0
        while round_ == 0 or time.monotonic() < deadline:
            for name in names:
                seed = args.seed + 1000 * round_
                row = run_scenario(
                    lab, SCENARIOS[name], runs=args.runs, seed=seed, patience=patience
                )
                rows[name].append(row)
                print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
                for problem in row.problems[:20]:
                    print(f"  {problem}", file=sys.stderr)
            round_ += 1
    finally:
        lab.close()
    merged = [merge(r) for r in rows.values() if r]
    print(table(merged))
    print(f"\nlogs: {workdir}")
    if args.json:
        args.json.write_text(json.dumps([vars(r) for r in merged], indent=2))
    return 1 if any(r.lost or r.duplicated for r in merged) else 0


if __name__ == "__main__":
    sys.exit(main())
