"""The services a fault run owns: a private Redis server and a private PostgreSQL database."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench.children import ends_with_this_process


class ServiceMissing(RuntimeError):
    """A binary or server the fault runs need is not there."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server process of our own, so FLUSHALL and restarts disturb nobody else."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise ServiceMissing("redis-server is not on PATH")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.binary is not None
        log = (self.workdir / "redis.log").open("ab")
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        argv += ["--dir", str(self.workdir), "--loglevel", "warning"]
        self.process = subprocess.Popen(  # noqa: S603
            argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=ends_with_this_process()
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceMissing(f"redis-server exited, see {log.name}")
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise ServiceMissing(f"redis-server did not answer on port {self.port}")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)

    def flushall(self) -> None:
        self.client().flushall()

    def stop(self) -> None:
        """SIGKILL, as a crash would: no shutdown, every client connection dropped at once."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self, down_seconds: float) -> None:
        """Stop, stay down a while (clients see refused connections), start on the same port."""
        self.stop()
        time.sleep(down_seconds)
        self.start()


def database_url(base_url: str, name: str) -> str:
    """The same server as `base_url`, database `name`."""
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def ensure_database(base_url: str, name: str) -> str:
    """Create database `name` on the server of `base_url` if missing; its URL."""
    admin = create_engine(
        database_url(base_url, "postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        with admin.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if found is None:
                # A name is not a bind parameter in DDL; ours is a fixed identifier, quoted.
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return database_url(base_url, name)


class ConnectionCutter:
    """Terminates every other session of one database (ours), as a PostgreSQL restart would."""

    def __init__(self, url: str) -> None:
        self.name = make_url(url).database
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)

    def cut(self) -> int:
        """How many sessions were terminated; never a session of another database."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": self.name},
            ).all()
        return sum(1 for (done,) in rows if done)

    def close(self) -> None:
        self.engine.dispose()
