"""The embedded default: API, dashboard and steps in one process over SQLite, no servers."""

from __future__ import annotations

import secrets
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from api.app import create_app
from engine.runtime import Runtime, create_runtime
from engine.settings import Settings
from migrations import upgrade
from tasks.local import LocalExecutor


def embedded_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for one process that keeps everything under `data_dir`.

    AUTOMATIONS_ENV is honoured: in production the secret key is checked as for any server."""
    Settings(**overrides).check_production_ready()  # before anything is written
    data_dir.mkdir(parents=True, exist_ok=True)
    key_file = data_dir / "api-key"
    if not key_file.exists():
        key_file.write_text("re_dev_" + secrets.token_urlsafe(24))
        key_file.chmod(0o600)
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{(data_dir / 'automations.sqlite3').resolve()}",
        "email_transport_url": f"file://{(data_dir / 'outbox').resolve()}",
        "api_key": key_file.read_text().strip(),
        "sweeper_interval_seconds": 1,
        **overrides,
    }
    return Settings(**values)


class EmbeddedServer:
    """uvicorn serving the app on a thread, the executor on its own threads."""

    def __init__(self, settings: Settings, *, host: str, port: int, threads: int = 2) -> None:
        upgrade(settings.database_url)
        self.settings = settings
        self.runtime: Runtime = create_runtime(settings)
        self.executor = LocalExecutor(self.runtime, threads=threads)
        app = create_app(settings, runtime=self.runtime, dispatcher=self.executor)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.url = f"http://{host}:{port}"

    @contextmanager
    def running(self) -> Iterator[EmbeddedServer]:
        """Serve in the background for the duration of the block."""
        self.executor.start()
        thread = threading.Thread(target=self.server.run, name="api", daemon=True)
        thread.start()
        try:
            while not self.server.started and thread.is_alive():
                thread.join(0.05)
            if not thread.is_alive():
                raise RuntimeError(f"the API could not start on {self.url}")
            # With port 0 the OS picked one: tell the caller which.
            host, port = self.server.servers[0].sockets[0].getsockname()[:2]
            self.url = f"http://{host}:{port}"
            yield self
        finally:
            self.server.should_exit = True
            thread.join(10)
            self.executor.stop()


def wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM (uvicorn runs on a thread, so the signals are ours)."""
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    stop.wait()
