"""Celery workers for the benchmarks: one command line for the baseline and ours, in either
shape: one prefork worker with N pool processes, or N single-process (solo pool) workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import cpu
from bench.children import ends_with_this_process
from bench.procs import ROOT, stop

POOLS = ("prefork", "solo")


def worker_argv(
    app: str, queues: str, concurrency: int, *, pool: str = "prefork", name: str = "bench"
) -> list[str]:
    """One command line for both sides, so the baseline and ours run the same worker shape."""
    level = os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING")
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "-Q",
        queues,
        "-P",
        pool,
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "-l",
        level,
    ]


@dataclass
class Workers:
    """The worker processes of one benchmark phase."""

    processes: list[subprocess.Popen[bytes]]

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def cpu(self, database_url: str) -> cpu.CpuSnapshot:
        return cpu.snapshot(self.pids, database_url=database_url)

    def check_alive(self, since: float, give_up_seconds: float) -> None:
        """Fail rather than wait forever: the runner goes on with the next benchmark."""
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"a worker exited with {process.returncode}; see its log")
        if time.perf_counter() - since > give_up_seconds:
            raise TimeoutError(f"not done after {give_up_seconds} s")

    def stop(self) -> None:
        for process in self.processes:
            stop(process)


def start_workers(
    app: str,
    queues: str,
    *,
    concurrency: int,
    pool: str,
    env: dict[str, str],
    log: Path,
    root: Path = ROOT,
) -> Workers:
    """`concurrency` pool processes under one prefork worker, or as many solo workers."""
    if pool == "solo":
        argvs = [
            worker_argv(app, queues, 1, pool="solo", name=f"bench{n}") for n in range(concurrency)
        ]
    else:
        argvs = [worker_argv(app, queues, concurrency, pool=pool)]
    processes = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            argv,
            cwd=root,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            preexec_fn=ends_with_this_process(),
        )
        for argv in argvs
    ]
    time.sleep(0.5)
    return Workers(processes)


def wait_ready(app: Any, expected: int = 1, timeout: float = 30) -> None:
    """Until `expected` workers answer a ping."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=0.5)) >= expected:
            return
    raise RuntimeError("worker did not start")
