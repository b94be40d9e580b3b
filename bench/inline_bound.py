"""How many instant steps a worker should run inline: AUTOMATIONS_INLINE_STEPS, swept.

    python -m bench.inline_bound [--runs 200] [--chain 16] [--bounds 0,1,2,4,8,16] [--rounds 2]
                                 [--database-url URL] [--redis-url URL]

The reference automation of bench.throughput has at most two instant steps in a row, so every
bound from 1 up runs it the same way. Here each run is a trigger and then `--chain` instant
steps in a row (contact updates, each locking and writing the run's contact), and nothing else:
a bound of b runs b + 1 steps per task execution (the one the message named, then b inline), so
a run takes ceil(chain / (b + 1)) messages. For each bound, in rounds whose order alternates so
that a drift of the machine's load spreads over all of them: steps/s, and CPU per step in the
worker processes, PostgreSQL and Redis (as bench.throughput reads them). What a higher bound
costs is not in these figures: one task execution holds its worker for its b + 1 steps (another
run's message waits that long), and Flower shows one task where b + 1 steps ran.

Prints JSON and a Markdown table; nothing is written to bench/results.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from typing import Any

from bench import BENCH_DATABASE_URL, BENCH_REDIS_URL
from bench.procs import ensure_database
from bench.throughput import log_file, measure_durable, smtp_sink
from bench.workers import POOLS

EVENT = "bench.run"


def chain_automation(length: int) -> Any:
    """What measure_durable prepares: a fresh schema and one automation of `length` instant
    steps in a row after its trigger."""

    def prepare(rt: Any) -> None:
        from bench.procs import fresh_schema
        from engine.db import transaction
        from engine.lifecycle import create_automation

        fresh_schema(rt.sessions.kw["bind"])
        keys = [f"s{n}" for n in range(length)]
        steps = [{"key": "start", "type": "trigger", "config": {"event_name": EVENT}}]
        steps += [
            {"key": key, "type": "contact_update", "config": {"properties": {"step": n}}}
            for n, key in enumerate(keys)
        ]
        order = ["start", *keys]
        connections = [{"from": a, "to": b} for a, b in itertools.pairwise(order)]
        with transaction(rt.sessions) as session:
            create_automation(
                session,
                name="inline-bound",
                status="enabled",
                now=rt.clock.now(),
                steps=steps,
                connections=connections,
            )

    return prepare


def sweep(args: argparse.Namespace) -> dict[int, list[dict[str, Any]]]:
    """Each bound's phases, `args.rounds` of them, the order reversed every other round."""
    log = log_file(args)
    ensure_database(args.database_url)
    measured: dict[int, list[dict[str, Any]]] = {bound: [] for bound in args.bounds}
    with smtp_sink() as (_, smtp):
        for round_ in range(args.rounds):
            order = args.bounds if round_ % 2 == 0 else list(reversed(args.bounds))
            for bound in order:
                phase = measure_durable(
                    args,
                    log,
                    smtp,
                    inline=bound,
                    prepare=chain_automation(args.chain),
                    steps_per_run=args.chain,
                )
                measured[bound].append(phase)
                print(
                    f"round {round_ + 1}, bound {bound}: {phase['steps_per_s']} steps/s",
                    file=sys.stderr,
                )
    return measured


def summary(
    args: argparse.Namespace, measured: dict[int, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """A row per bound: the rounds' median steps/s and CPU per step, and the messages a run
    takes."""
    rows = []
    for bound, phases in measured.items():
        cpu = [phase["cpu_ms_per_step"] for phase in phases]
        rows.append(
            {
                "bound": bound,
                "steps_per_task_execution": min(bound + 1, args.chain),
                "messages_per_run": math.ceil(args.chain / (bound + 1)),
                "steps_per_s": [phase["steps_per_s"] for phase in phases],
                "median_steps_per_s": statistics.median(p["steps_per_s"] for p in phases),
                "cpu_ms_per_step": {
                    group: round(statistics.median(one.get(group, 0.0) for one in cpu), 3)
                    for group in sorted({group for one in cpu for group in one})
                },
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    groups = sorted({group for row in rows for group in row["cpu_ms_per_step"]})
    head = ["bound", "steps per task execution", "messages per run", "steps/s (median)"]
    head += [f"CPU ms/step: {group}" for group in groups]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        rounds = ", ".join(f"{value:.0f}" for value in row["steps_per_s"])
        cells = [
            str(row["bound"]),
            str(row["steps_per_task_execution"]),
            str(row["messages_per_run"]),
            f"{row['median_steps_per_s']:.0f} ({rounds})",
        ]
        cells += [f"{row['cpu_ms_per_step'].get(group, 0.0):.2f}" for group in groups]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bounds(text: str) -> list[int]:
    """`--bounds`: whole numbers from 0, comma-separated."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError("bounds are whole numbers from 0")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--chain", type=int, default=16, help="instant steps in a row per run")
    parser.add_argument("--bounds", type=bounds, default=[0, 1, 2, 4, 8, 16])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes in all")
    parser.add_argument("--pool", choices=POOLS, default="prefork")
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL)
    parser.add_argument("--log", default="build/inline-bound-workers.log")
    args = parser.parse_args(argv)
    if args.chain < 1 or args.runs < 1 or args.rounds < 1:
        parser.error("--chain, --runs and --rounds are at least 1")
    rows = summary(args, sweep(args))
    print(json.dumps({"config": vars(args), "rows": rows}, indent=2))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
