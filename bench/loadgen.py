"""The native load generator of bench/ingest.py: `wrk`, its figures, and the CPU it used, so
that a result says the client was not the bottleneck.

Set-up: `make bench-setup` (on Debian and Ubuntu: `apt-get install -y wrk`; on macOS:
`brew install wrk`)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("wrk_events.lua")
INSTALL = "make bench-setup"  # or: apt-get install -y wrk
# Above this share of one core the client may be what limits the figures: the run fails.
MAX_CLIENT_CORES = 0.5
TICKS = os.sysconf("SC_CLK_TCK")
# Each shot's events are for addresses of their own: a shot never sends for another's contacts.
_SHOTS = itertools.count()


class LoadGeneratorMissing(RuntimeError):
    pass


class ClientBound(RuntimeError):
    """The load generator used too much CPU for its figures to measure the server."""


def wrk_binary() -> str:
    """The path of wrk; LoadGeneratorMissing saying how to install it."""
    found = shutil.which("wrk")
    if found is None:
        raise LoadGeneratorMissing(
            f"bench.ingest drives the server with wrk, which is not installed: run `{INSTALL}`"
        )
    return found


@dataclass(frozen=True)
class Load:
    """What one wrk run measured, and what it cost the client."""

    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    timeouts: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_seconds: float
    connections: int = 0  # wrk's, filled in by `fire`

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def client_cores(self) -> float:
        """The client's CPU over the run, in cores (1.0 = one core busy all along)."""
        return self.client_cpu_seconds / self.seconds

    @property
    def errors(self) -> int:
        return self.status_errors + self.socket_errors + self.timeouts


@dataclass(frozen=True)
class Shot:
    """One wrk run: which endpoint, in which mode, how hard."""

    url: str
    mode: str  # health, send or batch (see wrk_events.lua)
    seconds: float
    connections: int
    threads: int = 2
    batch: int = 100
    # Mean ms each connection waits after an answer (wrk_events.lua): a rate below the maximum.
    pace_ms: float | None = None


def fire(shot: Shot, *, api_key: str, run_id: str) -> Load:
    """Run wrk for this shot; its figures and CPU. Raises ClientBound past MAX_CLIENT_CORES."""
    threads = min(shot.threads, shot.connections)
    argv = [wrk_binary(), "-t", str(threads), "-c", str(shot.connections)]
    argv += ["-d", f"{max(shot.seconds, 1):.0f}s", "--timeout", "10s", "-s", str(SCRIPT)]
    env = {
        **os.environ,
        "BENCH_MODE": shot.mode,
        "BENCH_BATCH": str(shot.batch),
        "BENCH_RUN": f"{run_id}-{shot.mode}-{shot.connections}-{next(_SHOTS)}",
        "BENCH_API_KEY": api_key,
        "BENCH_PACE_MS": str(shot.pace_ms or 0),
    }
    process = subprocess.Popen(  # noqa: S603 - wrk from PATH, our own arguments
        [*argv, shot.url], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    cpu = _cpu_until_exit(process)
    output = process.communicate()[0]
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {output.strip()}")
    load = dataclasses.replace(_parse(output, cpu), connections=shot.connections)
    if load.client_cores > MAX_CLIENT_CORES:
        raise ClientBound(
            f"wrk used {load.client_cores:.2f} of a core on {shot.mode} (limit "
            f"{MAX_CLIENT_CORES}): the client may be the bottleneck, the figures are not the "
            "server's"
        )
    return load


def _cpu_until_exit(process: subprocess.Popen[str]) -> float:
    """The process's user + system CPU seconds, from /proc/<pid>/stat, read until it exits.

    The process is not reaped meanwhile: a zombie's stat still holds its final times (every
    thread's included), so the last reading is the whole run's."""
    stat = Path(f"/proc/{process.pid}/stat")
    cpu = 0.0
    while True:
        try:
            raw = stat.read_text()
        except (FileNotFoundError, ProcessLookupError):
            return cpu
        fields = raw[raw.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
        if fields[0] in ("Z", "X"):
            return cpu
        time.sleep(0.05)


def _parse(output: str, cpu_seconds: float) -> Load:
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            figures = json.loads(line.removeprefix("BENCH_RESULT "))
            return Load(
                requests=figures["requests"],
                seconds=figures["duration_us"] / 1e6,
                status_errors=figures["status_errors"],
                socket_errors=figures["socket_errors"],
                timeouts=figures["timeouts"],
                p50_ms=figures["p50_us"] / 1000,
                p90_ms=figures["p90_us"] / 1000,
                p99_ms=figures["p99_us"] / 1000,
                max_ms=figures["max_us"] / 1000,
                client_cpu_seconds=cpu_seconds,
            )
    raise RuntimeError(f"wrk printed no result line:\n{output}")
