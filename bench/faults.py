"""Fault injection, long form: many runs, each fault over and over, one table at the end.

    python -m bench.faults [--runs 500] [--minutes 5] [--faults sigkill,pg-terminate,...]
                           [--seed 1] [--workers 3] [--postgres-url URL] [--database faults]

Starts its own redis-server on a free port, uses its own database on the PostgreSQL server of
--postgres-url, three Celery workers (the first solo, the others prefork `-c 1`), an SMTP sink and
a Resend API stub. Runs every fault scenario of bench/faultlab/scenarios.py with --runs runs, then
again with new seeds while --minutes last (at least once), and prints JSON and a Markdown table
(the detailed table per fault goes to stderr). Exits 1 if a run or an email was lost or an email was
duplicated under another id.
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

from bench import report
from bench.faultlab.lab import Lab, Timing, worker_shapes
from bench.faultlab.report import Result, merge, table
from bench.faultlab.scenarios import SCENARIOS, run_scenario
from bench.faultlab.services import ensure_database

TITLE = "Fault injection: runs and emails lost or sent twice under two ids"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument(
        "--faults",
        type=fault_names,
        default="all",
        help=f"comma-separated: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, default=3, help="the first solo, the others prefork -c 1"
    )
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1/test")
    parser.add_argument("--database", default="faults")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--lease-seconds", type=float, default=8)
    parser.add_argument(
        "--broker-heartbeat-seconds",
        type=float,
        default=Timing.broker_heartbeat_seconds,
        help="each worker's heartbeat to Redis; a killed worker is found dead after three",
    )
    parser.add_argument(
        "--stale-seconds",
        type=float,
        default=15,
        help="above the longest queue backlog, or the sweeper's re-sends flood the queue",
    )


def fault_names(faults: str) -> list[str]:
    names = list(SCENARIOS) if faults == "all" else faults.split(",")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault(s) {', '.join(unknown)}")
    return names


def run(args: argparse.Namespace) -> report.Result:
    # Lab starts its redis-server before it reaches the database, and a Lab that fails to build
    # cannot be closed: an unreachable database is found here first, before anything starts.
    ensure_database(args.postgres_url, args.database)
    names = args.faults
    rows: dict[str, list[Result]] = {name: [] for name in names}
    workdir = Path(tempfile.mkdtemp(prefix="faults-"))
    timing = Timing(
        lease_seconds=args.lease_seconds,
        stale_seconds=args.stale_seconds,
        broker_heartbeat_seconds=args.broker_heartbeat_seconds,
    )
    shapes = worker_shapes(args.workers)
    lab = Lab(workdir, args.postgres_url, args.database, workers=shapes, timing=timing)
    # Seconds a wait may see nothing move (bench/faultlab/driver.py's Moving); a few times the
    # longest pause a fault makes (a sweeper's re-send, a restarted Redis, a worker's start).
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
                for what in row.stalls:
                    print(f"  gave up waiting for {what}", file=sys.stderr)
            round_ += 1
    finally:
        lab.close()
    merged = [merge(r) for r in rows.values() if r]
    print(table(merged), file=sys.stderr)
    print(f"\nlogs: {workdir}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps([vars(r) for r in merged], indent=2))
    faults = [{**vars(r), "problems": r.problems[:50]} for r in merged]
    details = {"config": vars(args), "logs": str(workdir), "faults": faults}
    return report.result("faults", TITLE, [row_of(r) for r in merged], details)


def row_of(merged: Result) -> report.Row:
    """Losses and two-id duplicates together: the figure that must be zero."""
    return report.row(
        f"{merged.fault}: lost or duplicated ({merged.runs:,} runs, {merged.emails:,} emails, "
        f"{merged.injected:,} faults)",
        merged.lost + merged.duplicated,
        "runs or emails",
        target="0",
        met=merged.lost + merged.duplicated == 0,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    # Stopped by a signal, still stop our Redis and workers (a background job ignores SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    measured = report.standalone(__doc__, add_arguments, run, argv)
    return 0 if all(row["met"] for row in measured["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
