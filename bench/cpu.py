"""CPU time of the processes a benchmark drives, read from /proc: the worker's parent and its
pool children, the PostgreSQL backends of the benchmark's database, and Redis, so that a figure
per step can name who spent it. Other work on the machine is left out, not subtracted."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, parent pid, CPU seconds) of a process, None if it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of the file: 12 and 13 after the name.
    return name, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def _processes() -> dict[int, tuple[str, int, float]]:
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = stat
    return found


def database_backends(database_url: str) -> list[int]:
    """Pids of the PostgreSQL backends connected to this URL's database."""
    db_engine = create_engine(database_url)
    try:
        with db_engine.connect() as conn:
            query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            return [int(pid) for pid in conn.execute(text(query)).scalars()]
    finally:
        db_engine.dispose()


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far, by group, by process."""

    groups: dict[str, dict[int, float]]

    def minus(self, earlier: CpuSnapshot) -> dict[str, float]:
        """Seconds spent by each group since `earlier` (processes new since then count whole)."""
        spent = {}
        for group, processes in self.groups.items():
            before = earlier.groups.get(group, {})
            spent[group] = round(
                sum(cpu - before.get(pid, 0.0) for pid, cpu in processes.items()), 4
            )
        return spent


def snapshot(
    worker_pids: list[int] | None = None,
    *,
    database_url: str | None = None,
    extra: dict[str, int] | None = None,
) -> CpuSnapshot:
    """CPU so far of the workers' main processes and their pool children, the database's
    backends, Redis, and any `extra` process by label (a load generator, an API server)."""
    processes = _processes()

    def of(pids: Iterable[int]) -> dict[int, float]:
        return {pid: processes[pid][2] for pid in pids if pid in processes}

    groups: dict[str, dict[int, float]] = {
        "redis": of(pid for pid, (name, _, _) in processes.items() if name.startswith("redis")),
    }
    if database_url is not None and make_url(database_url).get_backend_name() == "postgresql":
        groups["postgres"] = of(database_backends(database_url))
    if worker_pids is not None:
        groups["worker_main"] = of(worker_pids)
        groups["worker_children"] = of(
            pid for pid, (_, parent, _) in processes.items() if parent in worker_pids
        )
    for label, pid in (extra or {}).items():
        groups[label] = of([pid])
    return CpuSnapshot(groups)
