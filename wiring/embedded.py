"""The embedded mode: the API, the dashboard and the steps in one process, no servers.

Steps run on threads of the process (tasks/local.py) instead of Celery workers; the state is
wherever the settings say (SQLite for `automations dev` and `demo`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from engine import sweeper
from engine.runtime import Runtime, create_runtime
from engine.settings import Settings
from migrations import upgrade
from tasks.local import LocalExecutor
from wiring.server import create_server


class ApiDidNotStart(RuntimeError):
    """uvicorn gave up before serving (it logged why: most often, the port was taken)."""


class EmbeddedServer:
    """uvicorn serving the app on a thread, the executor on its own threads.

    `sole_executor`: no other process executes this database's steps (the caller holds its
    data dir), so what a killed predecessor left running or queued is taken over at the start.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        host: str,
        port: int,
        threads: int = 2,
        sole_executor: bool = False,
    ) -> None:
        upgrade(settings.database_url)
        self.settings = settings
        self.sole_executor = sole_executor
        self.runtime: Runtime = create_runtime(settings)
        self.executor = LocalExecutor(self.runtime, threads=threads)
        app = create_server(settings, runtime=self.runtime, dispatcher=self.executor)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.url = f"http://{host}:{port}"

    @contextmanager
    def running(self) -> Iterator[EmbeddedServer]:
        """Serve in the background for the duration of the block."""
        if self.sole_executor:
            sweeper.take_over(self.runtime, self.executor)
        self.executor.start()
        thread = threading.Thread(target=self.server.run, name="api", daemon=True)
        thread.start()
        try:
            while not self.server.started and thread.is_alive():
                thread.join(0.05)
            if not thread.is_alive():
                raise ApiDidNotStart(f"the API could not start on {self.url}")
            # With port 0 the OS picked one: tell the caller which.
            host, port = self.server.servers[0].sockets[0].getsockname()[:2]
            self.url = f"http://{host}:{port}"
            yield self
        finally:
            self.server.should_exit = True
            thread.join(10)
            self.executor.stop()
