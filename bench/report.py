"""What every benchmark returns, and how a set of results is shown: JSON, Markdown, a PNG chart.

A benchmark module has three functions: `add_arguments(parser)` (its options, with defaults),
`run(args) -> Result` (measures) and `main(argv) -> int`. A result is plain JSON:

    {"name": "throughput", "title": "...", "details": {...}, "rows": [
        {"metric": "...", "ours": 812.0, "baseline": 1020.0, "baseline_label": "raw Celery",
         "unit": "steps/s", "ratio": 0.796, "target": ">= 0.8 x baseline", "met": false}]}

A benchmark that failed is `{"name": ..., "error": "..."}` in the same list. `machine()` says
where the figures were measured, so that they are never read without it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

from bench.procs import ROOT


class Row(TypedDict):
    metric: str
    ours: float
    baseline: float | None
    baseline_label: str | None
    unit: str
    ratio: float | None
    target: str | None
    met: bool | None


class Result(TypedDict):
    name: str
    title: str
    rows: list[Row]
    details: dict[str, Any]


class Failure(TypedDict):
    name: str
    error: str
    traceback: NotRequired[str]


# Distribution name -> how docs/benchmarks.md and the table call it.
PACKAGES = {
    "celery": "celery",
    "kombu": "kombu",
    "redis": "redis-py",
    "SQLAlchemy": "SQLAlchemy",
    "psycopg": "psycopg",
    "fastapi": "FastAPI",
    "uvicorn": "uvicorn",
}
COLUMNS = ("benchmark", "metric", "ours", "baseline", "ratio", "target", "met")
CREDENTIALS = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]+@", re.IGNORECASE)


# --- building results -----------------------------------------------------------------------


def row(
    metric: str,
    ours: float,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_label: str | None = None,
    target: str | None = None,
    met: bool | None = None,
) -> Row:
    """One figure; the ratio is ours / baseline, when there is a baseline to divide by."""
    ratio = round(ours / baseline, 3) if baseline else None
    return Row(
        metric=metric,
        ours=ours,
        baseline=baseline,
        baseline_label=baseline_label,
        unit=unit,
        ratio=ratio,
        target=target,
        met=met,
    )


def result(name: str, title: str, rows: list[Row], details: dict[str, Any]) -> Result:
    return Result(name=name, title=title, rows=rows, details=details)


def write_result(path: Path | None, measured: Result) -> None:
    """A benchmark's result where `--results PATH` asked for it (the committed record under
    bench/results is rewritten only on purpose); nothing without the option."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(measured) + "\n")
    print(f"written: {path}", file=sys.stderr)


def failure(name: str, error: BaseException | str, traceback: str | None = None) -> Failure:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    failed = Failure(name=name, error=text)
    if traceback:
        failed["traceback"] = traceback
    return failed


def check_result(value: Any, name: str) -> Result:
    """A module's answer, checked against the contract, so a mistake fails loudly and early."""
    if not isinstance(value, dict) or not isinstance(value.get("rows"), list):
        raise TypeError(f"bench.{name}.run() must return a dict with a list of rows")
    for one in value["rows"]:
        missing = set(Row.__annotations__) - set(one)
        if missing:
            raise TypeError(f"bench.{name}: a row lacks {', '.join(sorted(missing))}")
        if not isinstance(one["ours"], int | float) or not isinstance(
            one["baseline"], int | float | None
        ):
            raise TypeError(f"bench.{name}: {one['metric']!r} is not a number")
    value.setdefault("name", name)
    value.setdefault("title", name)
    value.setdefault("details", {})
    if not isinstance(value["details"], dict):
        raise TypeError(f"bench.{name}: details must be a dict")
    return cast(Result, value)


def redact(value: Any) -> Any:
    """The same structure with passwords in URLs masked: results and command lines get shared."""
    if isinstance(value, str):
        return CREDENTIALS.sub(r"\g<head>:***@", value)
    if isinstance(value, Mapping):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def to_json(document: Any) -> str:
    return json.dumps(redact(document), indent=2, default=str)


# --- the machine -----------------------------------------------------------------------------


def machine(database_url: str | None = None, redis_url: str | None = None) -> dict[str, Any]:
    """Cores, memory, CPU, kernel, versions of the stack and of the servers used, the commit."""
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {label: package_version(name) for name, label in PACKAGES.items()},
        "postgresql": database_version(database_url) if database_url else None,
        "redis": redis_version(redis_url) if redis_url else None,
        "git": git_commit(),
    }


def cpu_model() -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware"):
            return value.strip()
    return platform.processor() or None


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def database_version(url: str) -> str:
    """PostgreSQL's `server_version` (or SQLite's library version); the error if unreachable.

    Asked of the server's `postgres` database: the bench's own may not exist yet (a new
    machine's first run creates it)."""
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.pool import NullPool

    if url.startswith("sqlite"):
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    server = make_url(url).set(database="postgres")
    engine = create_engine(server, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())
    except Exception as exc:  # recorded, never fatal: a result without it still stands
        return f"unavailable ({type(exc).__name__})"
    finally:
        engine.dispose()


def redis_version(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        return str(client.info("server")["redis_version"])
    except Exception as exc:  # as above
        return f"unavailable ({type(exc).__name__})"
    finally:
        client.close()


def git_commit() -> str | None:
    """The short commit, with "-dirty" when tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(  # noqa: S603 - a fixed git command line
            ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


# --- Markdown --------------------------------------------------------------------------------


def number(value: float | None) -> str:
    """Thousands separated, with the decimals a reader can use."""
    if value is None:
        return "-"
    size = abs(value)
    if size >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:,.1f}"
    return f"{value:.2f}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def row_cells(name: str, one: Mapping[str, Any]) -> list[str]:
    unit = one.get("unit") or ""
    ours = f"{number(one['ours'])} {unit}".strip()
    baseline = "-"
    if one.get("baseline") is not None:
        baseline = f"{number(one['baseline'])} {unit}".strip()
        if one.get("baseline_label"):
            baseline += f" ({one['baseline_label']})"
    ratio = f"{one['ratio']:.2f}x" if one.get("ratio") is not None else "-"
    met = {True: "yes", False: "**no**"}.get(one.get("met"), "-")  # type: ignore[arg-type]
    return [name, one["metric"], ours, baseline, ratio, one.get("target") or "-", met]


def table(results: Sequence[Mapping[str, Any]]) -> str:
    """One table for every result; a failed benchmark is one row saying why."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for one in results:
        if "error" in one:
            cells = [one["name"], f"**error**: {one['error']}", *["-"] * (len(COLUMNS) - 2)]
            lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
            continue
        for figure in one["rows"]:
            lines.append("| " + " | ".join(cell(c) for c in row_cells(one["name"], figure)) + " |")
    return "\n".join(lines)


def machine_lines(facts: Mapping[str, Any]) -> list[str]:
    usable = facts.get("cores_usable")
    cores = f"{facts.get('cores')} cores" + (f" ({usable} usable)" if usable else "")
    hardware = [cores, f"{facts.get('memory_gb')} GB RAM", facts.get("cpu_model") or "CPU unknown"]
    servers = [
        f"PostgreSQL {facts['postgresql']}" if facts.get("postgresql") else None,
        f"Redis {facts['redis']}" if facts.get("redis") else None,
    ]
    packages = [f"{name} {version}" for name, version in (facts.get("packages") or {}).items()]
    return [
        f"- **Machine**: {', '.join(hardware)}; {facts.get('platform')}",
        f"- **Software**: Python {facts.get('python')}; "
        + "; ".join(s for s in servers if s)
        + ("; " if any(servers) else "")
        + ", ".join(packages),
        f"- **Commit**: {facts.get('git') or 'unknown'}",
    ]


def markdown(document: Mapping[str, Any]) -> str:
    """The results document (as written to latest.json) as a Markdown section."""
    lines = []
    if document.get("started"):
        when = f"{document['started']} to {document.get('finished', '?')}"
        lines.append(f"- **Run**: {when}, `{document.get('command', 'python -m bench')}`")
    if document.get("quick"):
        lines.append("- **Quick sizes**: a smoke run; not figures to compare")
    lines += machine_lines(document.get("machine") or {})
    return "\n".join([*lines, "", table(document["results"]), ""])


# --- the chart -------------------------------------------------------------------------------

OURS_COLORS = {True: "#2e8b57", False: "#c0392b", None: "#3b6ea5"}
BASELINE_COLOR = "#b0b0b0"


def chart(document: Mapping[str, Any], path: Path) -> None:
    """One horizontal bar panel per benchmark: ours against its baseline, row by row.

    Units differ from row to row (steps/s, ms, bytes), so each pair of bars is scaled to its
    larger value; the labels carry the figures. The colour of ours says whether the target is met.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    results = document["results"]
    heights = [max(len(r.get("rows") or []), 1) * 0.55 + 0.7 for r in results]
    figure = Figure(figsize=(12, sum(heights) + 1.2), layout="constrained")
    panels = figure.subplots(len(results), 1, squeeze=False, height_ratios=heights)[:, 0]
    for axes, one in zip(panels, results, strict=True):
        if "error" in one:
            error_panel(axes, one)
        else:
            result_panel(axes, one)
    facts = document.get("machine") or {}
    figure.suptitle(
        f"Benchmarks, commit {facts.get('git') or '?'}, {facts.get('cores')} cores, "
        f"{facts.get('memory_gb')} GB" + (" (quick sizes)" if document.get("quick") else ""),
        fontsize=12,
    )
    figure.supxlabel(
        "bars scaled per row to the larger of ours and its baseline; "
        "green: target met, red: missed, blue: no target; grey: baseline",
        fontsize=8,
        color="#555555",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def error_panel(axes: Any, failed: Mapping[str, Any]) -> None:
    axes.set_title(failed["name"], loc="left", fontsize=10, fontweight="bold")
    axes.text(
        0.01,
        0.5,
        textwrap.fill(f"error: {failed['error']}", 140),
        color=OURS_COLORS[False],
        va="center",
        fontsize=8,
    )
    axes.set_axis_off()


def result_panel(axes: Any, one: Mapping[str, Any]) -> None:
    rows = one["rows"]
    axes.set_title(one.get("title") or one["name"], loc="left", fontsize=10, fontweight="bold")
    for y, figure in enumerate(rows):
        largest = max(abs(figure["ours"]), abs(figure["baseline"] or 0)) or 1
        ours = abs(figure["ours"]) / largest
        axes.barh(y - 0.2, ours, height=0.38, color=OURS_COLORS[figure.get("met")])
        axes.text(ours + 0.01, y - 0.2, ours_label(figure), va="center", fontsize=7.5)
        if figure.get("baseline") is not None:
            base = abs(figure["baseline"]) / largest
            axes.barh(y + 0.2, base, height=0.38, color=BASELINE_COLOR)
            label = f"{number(figure['baseline'])} {figure['unit']}"
            if figure.get("baseline_label"):
                label += f", {figure['baseline_label']}"
            axes.text(base + 0.01, y + 0.2, label, va="center", fontsize=7.5, color="#555555")
    axes.set_yticks(range(len(rows)), [textwrap.fill(r["metric"], 40) for r in rows], fontsize=8)
    axes.set_ylim(len(rows) - 0.5, -0.5)  # first row on top, as in the table
    axes.set_xlim(0, 2.4)  # room on the right for the labels
    axes.set_xticks([])
    for side in ("top", "right", "bottom"):
        axes.spines[side].set_visible(False)


def ours_label(figure: Mapping[str, Any]) -> str:
    parts = [f"{number(figure['ours'])} {figure['unit']}".strip()]
    if figure.get("ratio") is not None:
        parts.append(f"{figure['ratio']:.2f}x baseline")
    if figure.get("target"):
        parts.append(f"target {figure['target']}")
    return ", ".join(parts)


# --- a module run on its own -----------------------------------------------------------------


def standalone(
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], Result],
    argv: list[str] | None,
) -> Result:
    """Parse, run, print the JSON then the Markdown table: a benchmark module's `main`."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    measured = run(args)
    database_url = getattr(args, "database_url", None) or getattr(args, "postgres_url", None)
    document = {
        "machine": machine(database_url, getattr(args, "redis_url", None)),
        "results": [measured],
    }
    print(to_json(document))
    print()
    print(markdown(document))
    return measured
