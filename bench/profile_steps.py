"""Where a durable step's time goes, in one process, without Celery: SQL statements and CPU.

    python -m bench.profile_steps [--runs 500] [--database-url URL] [--profile out.txt]

Ingests `--runs` runs of the throughput benchmark's 5-step automation, then executes every step
in this process, one after another, as a worker would (claim, execute, record, next). Reports
milliseconds (wall clock, and CPU of this process) and SQL statements per step, by step type,
and the CPU of the database's backends per step: the CPU figures hold on a busy machine, where
the wall clock does not. `--profile` adds a cProfile listing of the slowest functions
(cumulative), which is what docs/benchmarks-log.md's profile notes are read from.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import pstats
import sys
import time
from collections import deque
from typing import Any

from sqlalchemy import event

from bench import BENCH_DATABASE_URL, cpu
from bench.throughput import prepare_durable, start_runs


class Recorder:
    """Counts statements per dispatch, whatever the step does."""

    def __init__(self) -> None:
        self.statements = 0

    def __call__(self, *_: Any) -> None:
        self.statements += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    parser.add_argument("--profile", help="write a cProfile listing here")
    parser.add_argument(
        "--sort", default="cumulative", help="pstats order: cumulative, or tottime (own time)"
    )
    args = parser.parse_args()

    from engine.executor import execute_step
    from engine.mail.message import message_id
    from engine.runtime import create_runtime
    from engine.settings import Settings

    class NullTransport:
        """Accepts every message in memory: the transport's own cost is not the engine's."""

        name = "null"

        def send(self, email: Any) -> str:
            return message_id(email)

        def close(self) -> None:
            """Nothing to release."""

    settings = Settings(database_url=args.database_url, env="test")
    # As a Celery worker runs it: no ping per checkout (see tasks/app.py).
    rt = create_runtime(settings, transport=NullTransport(), pre_ping=False)
    prepare_durable(rt)
    pending = deque(start_runs(rt, args.runs))
    recorder = Recorder()
    # The dialect's events, not the connection's: a listener of those would send every
    # statement through Core (engine/store/core.py's `listened`), not as a worker runs it.
    for name in ("do_execute", "do_executemany", "do_execute_no_params"):
        event.listen(rt.sessions.kw["bind"], name, recorder)
    seconds: dict[str, float] = collections.defaultdict(float)
    cpu_seconds: dict[str, float] = collections.defaultdict(float)
    statements: dict[str, int] = collections.defaultdict(int)
    counts: dict[str, int] = collections.defaultdict(int)
    profiler = cProfile.Profile() if args.profile else None
    database_before = cpu.snapshot(database_url=args.database_url)
    started, started_cpu = time.perf_counter(), time.process_time()
    while pending:
        item = pending.popleft()
        before, t0, c0 = recorder.statements, time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        pending.extend(
            execute_step(rt, item.run_id, item.step_key, item.step_type, version_id=item.version_id)
        )
        if profiler:
            profiler.disable()
        kind = str(item.step_type)
        seconds[kind] += time.perf_counter() - t0
        cpu_seconds[kind] += time.process_time() - c0
        statements[kind] += recorder.statements - before
        counts[kind] += 1
    elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    database = cpu.snapshot(database_url=args.database_url).minus(database_before)["postgres"]
    total = sum(counts.values())
    report = {
        "steps": total,
        "ms_per_step": round(elapsed / total * 1000, 3),
        "cpu_ms_per_step": round(elapsed_cpu / total * 1000, 3),
        "postgres_cpu_ms_per_step": round(database / total * 1000, 3),
        "statements_per_step": round(recorder.statements / total, 2),
        "by_type": {
            kind: {
                "steps": counts[kind],
                "ms": round(seconds[kind] / counts[kind] * 1000, 3),
                "cpu_ms": round(cpu_seconds[kind] / counts[kind] * 1000, 3),
                "statements": round(statements[kind] / counts[kind], 2),
            }
            for kind in sorted(counts)
        },
    }
    print(json.dumps(report, indent=2))
    if profiler and args.profile:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(60)
        with open(args.profile, "w") as handle:
            handle.write(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
