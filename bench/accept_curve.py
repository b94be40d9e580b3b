"""`POST /events/send`'s accept latency against the rate: where the group commit's waits begin.

    python -m bench.accept_curve [--seconds 6] [--shots 1:0,4:0,128:150,128:100,128:60,128:0]
                                 [--api-workers 2] [--baseline-root DIR]

bench.ingest measures the latency at one rate, half the maximum. This one measures it at
several: each shot is `connections:pace_ms`, a pace of 0 sending back to back, any other the
mean pause between a connection's answer and its next request (wrk_events.lua's pace, random
about it, as bench.ingest's half_rate uses). A caller alone is the transaction's own latency;
a few back to back show the wait for the group ahead; many paced callers show it under load.
From bench.ingest's schema (one automation on `bench.event`, a new contact per event) and its
production settings, no worker running. With `--baseline-root` (another checkout, e.g. a
worktree with a setting changed), its API is measured the same way first; the two alternate
`--pairs` times.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from bench import BENCH_REDIS_URL, ingest, ingest_broker, loadgen
from bench.procs import add_side_arguments, serve_api, sides


def shot_list(text: str) -> list[tuple[int, float]]:
    """`--shots`: `connections:pace_ms` pairs, comma-separated (connections ≥ 1, pace ≥ 0)."""
    shots = []
    for item in text.split(","):
        connections, _, pace = item.partition(":")
        try:
            shot = (int(connections), float(pace or 0))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not connections:pace_ms") from None
        if shot[0] < 1 or shot[1] < 0:
            raise argparse.ArgumentTypeError(f"{item!r}: at least 1 connection, a pace ≥ 0")
        shots.append(shot)
    return shots


def curve(args: argparse.Namespace, root: Path) -> list[tuple[int, float, loadgen.Load]]:
    """Each shot's load on a fresh schema, served from the checkout at `root`."""
    ingest.prepare(args.database_url)
    ingest_broker.purge(args.redis_url, *ingest.STEP_QUEUES)
    run_id = uuid.uuid4().hex[:8]
    measured = []
    with serve_api(ingest.server_env(args), workers=args.api_workers, root=root) as base_url:
        url = base_url + "/events/send"
        warm_up = loadgen.Shot(url, "send", seconds=2, connections=32)
        loadgen.fire(warm_up, api_key=ingest.API_KEY, run_id=run_id)
        for connections, pace in args.shots:
            shot = loadgen.Shot(
                url,
                "send",
                seconds=args.seconds,
                connections=connections,
                pace_ms=pace or None,
            )
            load = loadgen.fire(shot, api_key=ingest.API_KEY, run_id=run_id)
            if load.errors:
                raise RuntimeError(f"{load.errors} requests failed: the figures would not hold")
            measured.append((connections, pace, load))
    return measured


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", default="postgresql+psycopg://postgres@127.0.0.1/bench_ingest"
    )
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL)
    parser.add_argument(
        "--shots",
        type=shot_list,
        default="1:0,4:0,128:150,128:100,128:60,128:0",
        help="connections:pace_ms, comma-separated; a pace of 0 sends back to back",
    )
    parser.add_argument("--seconds", type=float, default=6, help="s per shot")
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn worker processes")
    add_side_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accept_curve", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    loadgen.wrk_binary()  # before anything starts: say how to install it
    print("| side | connections | pace | requests/s | p50 / p90 / p99 ms | wrk cores |")
    print("|---|---|---|---|---|---|")
    for side, root in sides(args):
        for connections, pace, load in curve(args, root):
            paced = f"{pace:g} ms" if pace else "back to back"
            print(
                f"| {side} | {connections} | {paced} | {load.per_second:,.0f} | "
                f"{load.p50_ms:.2f} / {load.p90_ms:.2f} / {load.p99_ms:.2f} | "
                f"{load.client_cores:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
