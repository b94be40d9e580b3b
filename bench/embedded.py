"""The embedded executor (`automations dev`, `automations demo`: steps on threads of one process,
no broker) against one solo Celery worker, on the same database, in the same run.

    python -m bench.embedded [--runs 400] [--sqlite] [--database-url URL] [--redis-url URL]

The reference automation of bench/throughput.py, its runs ingested before the clock starts, in
two phases per side, interleaved so that a change in the machine's load hits both sides of each
ratio: instant steps inline (`--inline-steps`, AUTOMATIONS_INLINE_STEPS' default) and one message
per step (0). The embedded side is a process of its own with the executor `automations dev`
runs (two step threads and its sweeper), the baseline one `--pool solo` worker: one process each.
Both commit each message's first claim before its step. CPU per step is read from /proc for that
process and, on PostgreSQL, the database's backends (bench/cpu.py).

`--sqlite` puts both sides on a SQLite file in a temporary folder, the embedded mode's default
database (`automations dev` keeps it in its data folder), where every commit is an fsync; the
baseline then shows what a broker adds on that file, not a deployment anyone should run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, func, select

from bench import BENCH_DATABASE_URL, BENCH_REDIS_URL, cpu, report
from bench.children import ends_with_this_process
from bench.procs import ROOT, analyze_tables, ensure_database, stop
from bench.throughput import (
    BENCH_SECRET,
    GIVE_UP_SECONDS,
    log_file,
    measure_durable,
    prepare_durable,
    rates,
    smtp_sink,
    start_runs,
)
from engine.db import create_db_engine
from engine.store.core import RUNS

TITLE = "The embedded executor vs one solo Celery worker"
COMPLETED = RUNS.c.status == "completed"
# What `automations dev` starts (cli/embedded.py).
EXECUTOR_THREADS = 2
READY = "ready"


def _settings(database_url: str, smtp_url: str, inline: int) -> Any:
    from engine.settings import Settings

    return Settings(
        database_url=database_url,
        email_transport_url=smtp_url,
        inline_steps=inline,
        env="test",
        secret_key=BENCH_SECRET,  # type: ignore[arg-type]
    )


def executor_process(database_url: str, smtp_url: str, inline: int, runs: int) -> None:
    """The embedded side (run as `python -m bench.embedded --executor ...`): ingests `runs`
    runs with the executor stopped, says READY on stdout, and on a line from stdin starts the
    executor with their first steps; it runs until it is stopped (SIGTERM)."""
    from engine.runtime import create_runtime
    from tasks.local import LocalExecutor

    rt = create_runtime(_settings(database_url, smtp_url, inline))
    prepare_durable(rt)
    dispatches = start_runs(rt, runs)
    analyze_tables(database_url)
    executor = LocalExecutor(rt, threads=EXECUTOR_THREADS)
    print(READY, flush=True)
    sys.stdin.readline()
    executor.start()
    executor.dispatch(dispatches)
    while True:
        time.sleep(3600)


def completed_runs(db_engine: Engine) -> int:
    with db_engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(RUNS).where(COMPLETED)) or 0)


def measure_embedded(
    args: argparse.Namespace, log: Path, smtp_url: str, *, inline: int
) -> dict[str, Any]:
    """Runs of the reference automation on the embedded executor, in a process of its own."""
    command = [sys.executable, "-m", "bench.embedded", "--executor", str(inline)]
    command += ["--runs", str(args.runs), "--database-url", args.database_url]
    command += ["--smtp-url", smtp_url]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        preexec_fn=ends_with_this_process(),
    )
    assert process.stdin is not None and process.stdout is not None
    db_engine = create_db_engine(args.database_url)
    try:
        if process.stdout.readline().decode().strip() != READY:
            raise RuntimeError(f"the embedded executor exited with {process.wait()}; see {log}")
        before = cpu.snapshot(database_url=args.database_url, extra={"embedded": process.pid})
        start = time.perf_counter()
        process.stdin.write(b"go\n")
        process.stdin.flush()
        while completed_runs(db_engine) < args.runs:
            if process.poll() is not None:
                raise RuntimeError(f"the embedded executor exited with {process.returncode}")
            if time.perf_counter() - start > GIVE_UP_SECONDS:
                raise TimeoutError(f"not done after {GIVE_UP_SECONDS} s")
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        after = cpu.snapshot(database_url=args.database_url, extra={"embedded": process.pid})
        spent = after.minus(before)
    finally:
        stop(process)
        db_engine.dispose()
    spent.pop("redis", None)  # no broker on this side
    return rates(inline, args.runs, elapsed, spent)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument(
        "--inline-steps", type=int, default=8, help="AUTOMATIONS_INLINE_STEPS of the first phase"
    )
    parser.add_argument(
        "--sqlite", action="store_true", help="both sides on a SQLite file in a temporary folder"
    )
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL)
    parser.add_argument("--log", default="bench/results/embedded.log")


def run(args: argparse.Namespace) -> report.Result:
    log = log_file(args)
    ensure_database(args.database_url)
    phases = {}
    with tempfile.TemporaryDirectory(prefix="bench-embedded-") as folder, smtp_sink() as sinks:
        sink, smtp = sinks
        redis.Redis.from_url(args.redis_url).flushdb()
        for inline in (args.inline_steps, 0):
            for side, measure in (("worker", measure_durable), ("embedded", measure_embedded)):
                phase = f"{side}_{inline}"
                given = phase_arguments(args, phase, Path(folder))
                phases[phase] = measure(given, log, smtp, inline=inline)
    details = {
        "config": vars(args),
        "database": "SQLite, a file per phase" if args.sqlite else args.database_url,
        **phases,
        "emails_at_sink": sink.count,
        "executor_threads": EXECUTOR_THREADS,
    }
    database = "SQLite" if args.sqlite else "PostgreSQL"
    inline = phases[f"embedded_{args.inline_steps}"]
    per_message = phases["embedded_0"]
    rows = [
        report.row(
            f"runs/s of the reference automation on {database} (INLINE_STEPS="
            f"{args.inline_steps}, {args.runs} runs)",
            inline["runs_per_s"],
            "runs/s",
            baseline=phases[f"worker_{args.inline_steps}"]["runs_per_s"],
            baseline_label="one solo Celery worker",
        ),
        report.row(
            f"steps/s, one message per step, on {database} (INLINE_STEPS=0)",
            per_message["steps_per_s"],
            "steps/s",
            baseline=phases["worker_0"]["steps_per_s"],
            baseline_label="one solo Celery worker",
        ),
        *cpu_rows(per_message, phases["worker_0"]),
    ]
    return report.result("embedded", TITLE, rows, details)


def phase_arguments(args: argparse.Namespace, phase: str, folder: Path) -> argparse.Namespace:
    """A phase's options: one solo worker (measure_durable's shape options) and, on SQLite, a
    file of its own (a schema is dropped and made anew for each phase, and SQLite cannot drop
    tables whose foreign keys make a cycle once they hold rows)."""
    given = argparse.Namespace(**{**vars(args), "pool": "solo", "concurrency": 1})
    if args.sqlite:
        given.database_url = f"sqlite:///{folder / phase}.db"
    return given


def cpu_rows(embedded: dict[str, Any], worker: dict[str, Any]) -> list[report.Row]:
    """CPU per step, one message per step: the executor's process against the worker's, and
    the database's backends on either side (PostgreSQL only)."""
    ours, theirs = embedded["cpu_ms_per_step"], worker["cpu_ms_per_step"]
    rows = [
        report.row(
            "CPU per step: the process",
            ours["embedded"],
            "ms",
            baseline=theirs["worker_main"] + theirs["worker_children"],
            baseline_label="the solo worker",
        )
    ]
    if "postgres" in ours:
        rows.append(
            report.row(
                "CPU per step: postgres",
                ours["postgres"],
                "ms",
                baseline=theirs["postgres"],
                baseline_label="beside the solo worker",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["--executor"]:
        executor = argparse.ArgumentParser(prog="python -m bench.embedded --executor")
        executor.add_argument("inline", type=int)
        executor.add_argument("--runs", type=int, required=True)
        executor.add_argument("--database-url", required=True)
        executor.add_argument("--smtp-url", required=True)
        given = executor.parse_args(arguments[1:])
        executor_process(given.database_url, given.smtp_url, given.inline, given.runs)
        return 0
    report.standalone(__doc__, add_arguments, run, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
