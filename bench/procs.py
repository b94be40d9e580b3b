"""Process helpers the benchmarks share: a free port, a server that answers, a sure stop."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, attempts: int = 100) -> None:
    """Until `url` answers at all (any status), for up to ~10 s; a server still starting."""
    for _ in range(attempts):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Terminate, then kill if it does not exit: a bench that fails must not leave it running."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
