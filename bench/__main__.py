"""Every benchmark, one after another, on this machine, in one run: JSON, Markdown and a chart.

    python -m bench [--only throughput,latency,...] [--quick] [--out bench/results]
                    [--database-url URL] [--redis-url URL] [--no-docs]

Runs the benchmarks in this process, in the order of BENCHES, each with the same database and
Redis URLs. A benchmark that fails is recorded as `{"name", "error"}` and the
others still run; each one stops its own servers and workers, failed or not. Writes
`latest.json` (results, machine, start and end, command line), `latest.md`, `latest.png` and
`history/<UTC time>.json` under --out; a full run (no --only, no --quick) also puts the table
into docs/benchmarks.md between its bench markers. `faults` (the long fault-injection form, minutes)
only runs when --only names it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
import os
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import BENCH_DATABASE_URL, BENCH_REDIS_URL, report
from bench.procs import ROOT

PAGE = ROOT / "docs" / "benchmarks.md"
PAGE_START = "<!-- bench:latest:start -->"
PAGE_END = "<!-- bench:latest:end -->"


@dataclass(frozen=True)
class Bench:
    name: str
    # Options and values for --quick: small sizes, the whole run in a few minutes.
    quick: tuple[tuple[str, str], ...] = ()
    by_default: bool = True
    # Starts a redis-server of its own, points at one where nothing listens, or needs none: no
    # --redis-url.
    own_redis: bool = False


BENCHES = (
    Bench("throughput", quick=(("--runs", "100"),)),
    Bench("embedded", quick=(("--runs", "100"),)),
    Bench("latency", quick=(("--seconds", "5"), ("--health-requests", "100"), ("--grace", "5"))),
    Bench("ingest", quick=(("--seconds", "3"), ("--batch-task-events", "20000"))),
    Bench("broker_down", quick=(("--duration", "2"),), own_redis=True),
    Bench("waiting", quick=(("--runs", "5000"),)),
    Bench("mass_cancel", quick=(("--runs", "5000"),)),
    Bench("dashboard", quick=(("--runs", "5000"), ("--requests", "10"))),
    Bench("api_reads", quick=(("--runs", "20000"), ("--requests", "50"), ("--warmup", "5"))),
    Bench("simulate", quick=(("--simulations", "50"),)),
    Bench(
        "faults",
        quick=(("--runs", "30"), ("--minutes", "0")),
        by_default=False,
        own_redis=True,
    ),
)
NAMES = [bench.name for bench in BENCHES]


class Refused(Exception):
    """A benchmark that cannot be pointed at our database or Redis is not run at its defaults."""


def only_list(value: str) -> list[str]:
    names = [name.strip().replace("-", "_") for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(NAMES)}"
        )
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--only",
        type=only_list,
        help=f"comma-separated, of: {', '.join(NAMES)}; faults runs only when named here",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="default: bench/results"
    )
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL)
    parser.add_argument(
        "--no-docs", action="store_true", help="leave docs/benchmarks.md alone after a full run"
    )
    return parser.parse_args(argv)


def selected(options: argparse.Namespace) -> list[Bench]:
    if options.only:
        return [bench for bench in BENCHES if bench.name in options.only]
    return [bench for bench in BENCHES if bench.by_default]


# --- one benchmark ---------------------------------------------------------------------------


def connection_argv(
    bench: Bench, accepted: Sequence[str], options: argparse.Namespace
) -> list[str]:
    """Our database and Redis, under whichever option names the benchmark uses."""
    argv: list[str] = []
    if "--database-url" in accepted:
        argv += ["--database-url", options.database_url]
    elif "--postgres-url" in accepted and "--database" in accepted:
        from sqlalchemy.engine import make_url

        # bench/faults.py takes a server and a database name on it: the same database.
        database = make_url(options.database_url).database or ""
        argv += ["--postgres-url", options.database_url, "--database", database]
    else:
        raise Refused(f"bench.{bench.name} takes no --database-url: not run at its default")
    if "--redis-url" in accepted:
        argv += ["--redis-url", options.redis_url]
    elif "--broker-url" in accepted:
        argv += ["--broker-url", options.redis_url]
    elif not bench.own_redis:
        raise Refused(f"bench.{bench.name} takes no --redis-url: not run at its default")
    return argv


def bench_argv(
    bench: Bench,
    parser: argparse.ArgumentParser,
    options: argparse.Namespace,
) -> list[str]:
    # argparse has no public "does this parser take --x"; its option table is stable.
    accepted = list(parser._option_string_actions)
    argv = connection_argv(bench, accepted, options)
    if "--log" in accepted:
        argv += ["--log", str(options.out / f"{bench.name}-workers.log")]
    if options.quick:
        for option, value in bench.quick:
            if option in accepted:
                argv += [option, value]
            else:
                say(f"{bench.name}: no {option} option, its default size is used")
    return argv


def run_one(bench: Bench, options: argparse.Namespace) -> dict[str, Any]:
    """The benchmark's result, or a failure saying why; never an exception (but an interrupt)."""
    try:
        module = importlib.import_module(f"bench.{bench.name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"bench.{bench.name}":
            say(f"== {bench.name}: bench/{bench.name}.py is missing, going on without it")
            return dict(report.failure(bench.name, f"bench/{bench.name}.py is missing: not run"))
        return dict(report.failure(bench.name, exc, traceback.format_exc()))
    except Exception as exc:  # a module that does not import is this benchmark's failure only
        say(f"== {bench.name}: does not import: {exc!r}")
        return dict(report.failure(bench.name, exc, traceback.format_exc()))
    parser = argparse.ArgumentParser(prog=f"python -m bench.{bench.name}")
    try:
        module.add_arguments(parser)
        argv = bench_argv(bench, parser, options)
        args = parser.parse_args(argv)
    except Refused as exc:
        return dict(report.failure(bench.name, f"not run: {exc}"))
    except SystemExit:  # argparse exits on a value it refuses, after saying which
        return dict(report.failure(bench.name, "not run: its options were refused (see above)"))
    except Exception as exc:  # not a benchmark module of the contract: add_arguments, run
        return dict(report.failure(bench.name, exc, traceback.format_exc()))
    say(f"== {bench.name}: python -m bench.{bench.name} {shlex.join(argv)}")
    began = time.perf_counter()
    try:
        measured: dict[str, Any] = dict(report.check_result(module.run(args), bench.name))
    except Exception as exc:  # recorded; the next benchmark still runs
        say(f"{bench.name} failed: {exc}")
        return dict(report.failure(bench.name, exc, traceback.format_exc()))
    seconds = round(time.perf_counter() - began, 1)
    measured["details"]["runner"] = {"argv": argv, "seconds": seconds}
    say(f"== {bench.name}: done in {seconds} s")
    return measured


# --- the run ---------------------------------------------------------------------------------


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def write(document: dict[str, Any], out: Path, started: dt.datetime) -> list[Path]:
    """latest.json, latest.md, latest.png and the dated copy of the JSON; the paths written."""
    history = out / "history" / f"{started:%Y-%m-%dT%H-%M-%SZ}.json"
    history.parent.mkdir(parents=True, exist_ok=True)
    text = report.to_json(document) + "\n"
    written = [out / "latest.json", history, out / "latest.md"]
    written[0].write_text(text)
    history.write_text(text)
    written[2].write_text(report.markdown(document))
    try:
        report.chart(document, out / "latest.png")
        written.append(out / "latest.png")
    except ImportError:
        say("no chart: matplotlib is not installed (pip install -e '.[bench]')")
    except Exception as exc:  # the JSON and the table are written: a chart is not worth them
        say(f"no chart: {exc!r}")
    return written


def update_page(path: Path, table: str) -> bool:
    """The table between the page's bench markers; False if the markers are not there."""
    text = path.read_text()
    head, start, rest = text.partition(PAGE_START)
    _, end, tail = rest.partition(PAGE_END)
    if not start or not end:
        return False
    path.write_text(f"{head}{start}\n{table.strip()}\n{end}{tail}")
    return True


def page_block(document: dict[str, Any], written: Sequence[Path], page: Path = PAGE) -> str:
    """The Markdown of the run, and its chart when it lies in the repository, linked from `page`."""
    block = report.markdown(document)
    for path in written:
        if path.suffix == ".png" and path.resolve().is_relative_to(ROOT):
            link = Path(os.path.relpath(path.resolve(), page.resolve().parent)).as_posix()
            block += f"\n![The same results, ours against each baseline]({link})\n"
    return block


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    # A benchmark stopped by a signal still stops its servers and workers (their `finally`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    options.out.mkdir(parents=True, exist_ok=True)
    started = now()
    facts = report.machine(options.database_url, options.redis_url)
    results: list[dict[str, Any]] = []
    for bench in selected(options):
        results.append(run_one(bench, options))
    document = report.redact(
        {
            "started": started.isoformat(),
            "finished": now().isoformat(),
            "command": shlex.join(
                ["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]
            ),
            "quick": options.quick,
            "machine": facts,
            "results": results,
        }
    )
    written = write(document, options.out, started)
    for path in written:
        say(f"wrote {path}")
    if not (options.quick or options.only or options.no_docs):
        if update_page(PAGE, page_block(document, written)):
            say(f"wrote {PAGE}")
        else:
            say(f"{PAGE} has no {PAGE_START} marker: left alone")
    print(report.markdown(document))
    return 1 if any("error" in one for one in results) else 0


if __name__ == "__main__":
    sys.exit(main())
