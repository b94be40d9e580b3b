"""`POST /events/batch` as its tables grow, and the WAL PostgreSQL writes for it.

    python -m bench.ingest_growth [--runs 6] [--seconds 10] [--pairs 1] [--baseline-root DIR]

From bench.ingest's empty schema, `--runs` wrk runs of `POST /events/batch` one after the other
(100 events a request, a new contact each), the database analyzed after the first: each run's
events/s, and over all of them what `pg_stat_wal` counted per event (bytes, and full-page
images: a page's first change after a checkpoint writes the whole page). With
`--baseline-root` (another checkout, e.g. a worktree of main), its API is measured the same way
first, and the two alternate `--pairs` times on the same database. `pg_stat_wal` counts the
whole server: nothing else should write meanwhile.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from bench import BENCH_REDIS_URL, ingest, loadgen
from bench.procs import add_side_arguments, analyze_tables, serve_api, sides


@dataclass(frozen=True)
class Growth:
    """One side's runs from an empty schema."""

    rates: list[float]  # events/s, run by run
    events: int
    wal_bytes: int
    full_pages: int

    @property
    def settled(self) -> float:
        """The mean rate of the runs after the first (which runs before the ANALYZE)."""
        later = self.rates[1:] or self.rates
        return sum(later) / len(later)


def wal(database_url: str) -> tuple[int, int]:
    """The server's WAL so far: bytes, and full-page images."""
    db_engine = create_engine(database_url)
    try:
        with db_engine.connect() as conn:
            row = conn.execute(text("SELECT wal_bytes, wal_fpi FROM pg_stat_wal")).one()
            return int(row[0]), int(row[1])
    finally:
        db_engine.dispose()


def grow(args: argparse.Namespace, root: Path) -> Growth:
    ingest.prepare(args.database_url)
    run_id = uuid.uuid4().hex[:8]
    rates: list[float] = []
    with serve_api(ingest.server_env(args), workers=args.api_workers, root=root) as base_url:
        bytes_before, pages_before = wal(args.database_url)
        for number in range(args.runs):
            shot = loadgen.Shot(
                base_url + "/events/batch",
                "batch",
                seconds=args.seconds,
                connections=args.connections,
                batch=args.batch,
            )
            load = loadgen.fire(shot, api_key=ingest.API_KEY, run_id=f"{run_id}-{number}")
            if load.errors:
                raise RuntimeError(f"{load.errors} requests failed: the figures would not hold")
            rates.append(load.per_second * args.batch)
            if number == 0:
                analyze_tables(args.database_url)
        bytes_after, pages_after = wal(args.database_url)
    events = round(sum(rate * args.seconds for rate in rates))
    return Growth(rates, events, bytes_after - bytes_before, pages_after - pages_before)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", default="postgresql+psycopg://postgres@127.0.0.1/bench_ingest"
    )
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL)
    parser.add_argument("--runs", type=int, default=6, help="wrk runs from an empty schema")
    parser.add_argument("--seconds", type=float, default=10, help="s per wrk run")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn worker processes")
    add_side_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_growth", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    loadgen.wrk_binary()  # before anything starts: say how to install it
    for side, root in sides(args):
        one = grow(args, root)
        rates = ", ".join(f"{rate:,.0f}" for rate in one.rates)
        print(
            f"{side:>14}  events/s by run: {rates}; after the first {one.settled:,.0f}; "
            f"per event: WAL {one.wal_bytes / one.events:,.0f} bytes, full-page images "
            f"{one.full_pages / one.events:.4f} ({one.full_pages:,} for {one.events:,})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
