"""Several Celery worker processes, each prefork `-c 1` (a main process and one pool child) or
solo (one process that executes what it consumes), as a slot's shape says."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.children import ends_with_this_process

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
READY = b" ready."
SHAPES = ("prefork", "solo")


@dataclass
class Worker:
    slot: int
    name: str
    shape: str  # prefork or solo
    process: subprocess.Popen[bytes]
    log: Path
    offset: int  # where this process's lines start in the slot's log
    booted: bool = False  # READY seen in its log: a solo worker's sign that it consumes

    def executors(self) -> list[int]:
        """The processes that execute its steps, once it has started: a prefork worker's pool
        child (none while booting), a solo worker itself once it logged that it is ready."""
        if self.shape == "prefork":
            return children(self.process.pid)
        if not self.booted and self.process.poll() is None:
            with self.log.open("rb") as lines:
                lines.seek(self.offset)
                self.booted = READY in lines.read()
        return [self.process.pid] if self.booted and self.process.poll() is None else []


def children(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc), empty once it is gone."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    # Kernels built without the `children` file: find them by their parent pid instead.
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def signal_ours(pid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal `pid` only if it is still one of our worker processes (never a reused pid)."""
    try:
        if b"bench.faultlab.worker_app" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
        os.kill(pid, sig)
    except OSError:  # gone already (ProcessLookupError) or never ours
        return False
    return True


class WorkerPool:
    """Starts, kills and restarts workers with the same environment, one per slot, each of the
    shape of its slot in `shapes`."""

    def __init__(self, workdir: Path, env: dict[str, str], shapes: Sequence[str]) -> None:
        if not shapes or not set(shapes) <= set(SHAPES):
            raise ValueError(f"worker shapes are {SHAPES}, got {shapes}")
        self.workdir = workdir
        self.env = env
        self.shapes = tuple(shapes)
        self.count = len(self.shapes)
        self.workers: dict[int, Worker] = {}
        self._lock = threading.Lock()
        self._orphans: list[int] = []
        # Extra variables for every process started in a slot (fault checkpoints): a slot
        # restarted before its checkpoint fired stays armed; the marker makes it fire once.
        self.armed_env: dict[int, dict[str, str]] = {}

    def _spawn(self, slot: int) -> Worker:
        name = f"faults-{slot}-{uuid.uuid4().hex[:6]}@localhost"
        log = self.workdir / f"worker-{slot}.log"
        offset = log.stat().st_size if log.exists() else 0
        argv = [sys.executable, "-m", "celery", "-A", "bench.faultlab.worker_app", "worker"]
        shape = self.shapes[slot]
        argv += ["-Q", "automations", "-c", "1", "--pool", shape, "-n", name]
        argv += ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        argv += ["--without-heartbeat"]
        env = {**self.env, **self.armed_env.get(slot, {})}
        process = subprocess.Popen(  # noqa: S603 - our interpreter, our module
            argv,
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            preexec_fn=ends_with_this_process(),
        )
        return Worker(slot, name, shape, process, log, offset)

    def _wait_ready(self, worker: Worker, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker {worker.name} exited, see {worker.log}")
            with worker.log.open("rb") as log:
                log.seek(worker.offset)
                if READY in log.read():
                    worker.booted = True
                    return
            time.sleep(0.1)
        raise RuntimeError(f"worker {worker.name} not ready in {timeout:g} s, see {worker.log}")

    def start(self) -> None:
        """Start every slot that has no live worker, in parallel, and wait until all are ready."""
        with self._lock:
            fresh = [
                self._spawn(slot)
                for slot in range(self.count)
                if slot not in self.workers or self.workers[slot].process.poll() is not None
            ]
            for worker in fresh:
                self.workers[worker.slot] = worker
        for worker in fresh:
            self._wait_ready(worker)

    def kill(self, rng: random.Random) -> str | None:
        """SIGKILL a ready prefork worker's pool child (its main forks another), or a whole
        worker: a prefork one, main and child, or a solo one."""
        # A killed worker is started again at once, not waited for, so that kills can come
        # faster than workers boot; a worker still booting (no pool child yet) is spared.
        with self._lock:
            ready = self._ready()
            if not ready:
                return None
            slot = rng.choice(sorted(ready))
            worker, kids = self.workers[slot], ready[slot]
            if worker.shape == "solo":
                kids = []  # the worker itself: killed below
            elif rng.random() < 0.5 and signal_ours(rng.choice(kids)):
                return "child"
            # A crash of the machine: main and child die together, the broker keeps the
            # unacknowledged message until its visibility timeout, only the database knows.
            self._kill_and_respawn(worker, kids)
        return "solo worker" if worker.shape == "solo" else "worker"

    def kill_main(self, slot: int) -> None:
        """SIGKILL the main process of the worker in `slot` (the one that consumes from the
        broker) wherever it is, then its pool children; start it again without waiting."""
        with self._lock:
            worker = self.workers[slot]
            kids = children(worker.process.pid) if worker.shape == "prefork" else []
            self._kill_and_respawn(worker, kids)

    def _kill_and_respawn(self, worker: Worker, kids: list[int]) -> None:
        worker.process.kill()
        for pid in kids:
            signal_ours(pid)
        worker.process.wait()
        self.workers[worker.slot] = self._spawn(worker.slot)

    def wait_ready(self, slot: int, timeout: float = 60) -> None:
        """Until the worker in `slot` logged that it consumes."""
        self._wait_ready(self.workers[slot], timeout)

    def pause(self, rng: random.Random, seconds: float) -> str | None:
        """SIGSTOP a ready worker (main and child) for `seconds`, then SIGCONT: a hung worker."""
        # Unlike a kill, its connections stay open: a transaction it holds keeps its row locks,
        # and a step it claimed outlives its lease, so another worker takes it over meanwhile.
        with self._lock:
            ready = self._ready()
            if not ready:
                return None
            slot = rng.choice(sorted(ready))
            pids = sorted({self.workers[slot].process.pid, *ready[slot]})
        # Another injector may kill one of them meanwhile: the others must be continued anyway.
        stopped = [pid for pid in pids if signal_ours(pid, signal.SIGSTOP)]
        try:
            time.sleep(seconds)
        finally:
            for pid in stopped:
                signal_ours(pid, signal.SIGCONT)
        return "pause"

    def _ready(self) -> dict[int, list[int]]:
        """Slot -> the processes executing its steps, for the workers that have started."""
        return {w.slot: pids for w in self.workers.values() if (pids := w.executors())}

    def revive(self) -> int:
        """Start again, without waiting, every slot whose worker exited: a supervisor's job."""
        # Celery's main process exits by itself when its pool child dies while starting.
        with self._lock:
            dead = [w.slot for w in self.workers.values() if w.process.poll() is not None]
            for slot in dead:
                self._orphans.extend(children(self.workers[slot].process.pid))
                self.workers[slot] = self._spawn(slot)
        return len(dead)

    def resume_stopped(self) -> int:
        """SIGCONT any of our workers left stopped (state T); none should be, between faults."""
        resumed = 0
        with self._lock:
            for worker in self.workers.values():
                for pid in [worker.process.pid, *children(worker.process.pid)]:
                    try:
                        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                    except (OSError, IndexError):
                        continue
                    if state == "T" and signal_ours(pid, signal.SIGCONT):
                        log.warning("worker process %d was left stopped: continued", pid)
                        resumed += 1
        return resumed

    def alive(self) -> int:
        return sum(1 for w in self.workers.values() if w.process.poll() is None)

    def stop(self) -> None:
        """Stop every worker; children left by a killed main are killed too."""
        with self._lock:
            workers = list(self.workers.values())
            self.workers.clear()
        for worker in workers:
            self._orphans.extend(children(worker.process.pid))
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGQUIT)  # cold shutdown: no task to finish
        for worker in workers:
            try:
                worker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        for pid in self._orphans:
            signal_ours(pid)
        self._orphans.clear()
