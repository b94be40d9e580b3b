"""The embedded default on the command line: its settings, and one line when it cannot start
(the server itself is assembled in wiring/embedded.py)."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import SecretStr, ValidationError

from cli.failures import ExitCode, fail, fail_settings
from cli.local_keys import key_file
from engine.private_files import make_private_dir
from engine.settings import Settings

if TYPE_CHECKING:
    from wiring.embedded import EmbeddedServer

# Held (flock) by the process that serves a data dir; the OS lets go of it however it ends.
LOCK_FILE_NAME = "lock"


@contextmanager
def owning(data_dir: Path) -> Iterator[None]:
    """Hold `data_dir` for the block: a second dev or demo on it is refused in one line, since
    the holder takes over at its start whatever the database says is running (a kill's leftovers).
    """
    try:
        make_private_dir(data_dir)
        lock = (data_dir / LOCK_FILE_NAME).open("a+")
    except OSError as exc:
        unusable(data_dir, exc)
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip()
            fail(
                f"--data-dir {data_dir} is in use by another automations process"
                f"{f' (pid {holder})' if holder.isdigit() else ''}: stop it, or pass another"
                " --data-dir",
                ExitCode.BAD_INPUT,
            )
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


def unusable(data_dir: Path, exc: OSError) -> NoReturn:
    """One line for a data dir the OS refused: a file in its place is named as such."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        reason = "it, or a folder on its path, is a file: give a folder"
    else:
        reason = exc.strerror or str(exc)
    fail(f"cannot use --data-dir {data_dir}: {reason}", ExitCode.BAD_INPUT)


def wipe(data_dir: Path) -> None:
    """Empty a data dir this process holds (`owning`), all but its lock."""
    for entry in data_dir.iterdir():
        if entry.name == LOCK_FILE_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def checked_settings(data_dir: Path, **overrides: Any) -> Settings:
    """The settings of one process under `data_dir`, refused as `embedded_settings` refuses
    them (one line; ConfigurationError in production without a real secret key), with nothing
    written: to be called before the data dir is created or held."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{(data_dir / 'automations.sqlite3').resolve()}",
        "email_transport_url": f"file://{(data_dir / 'outbox').resolve()}",
        "sweeper_interval_seconds": 1,
        **overrides,
    }
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        fail_settings(exc)
    settings.check_production_ready()
    return settings


def embedded_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for one process that keeps everything under `data_dir`.

    The API key is written to `data_dir/api-key` once, where the client commands look for it;
    nothing is written when the settings are refused. AUTOMATIONS_ENV is honoured: in
    production the secret key is checked as for any server (ConfigurationError).
    """
    settings = checked_settings(data_dir, **overrides)
    path = key_file(data_dir)
    try:
        make_private_dir(data_dir)
        if not path.exists():
            write_private(path, "re_dev_" + secrets.token_urlsafe(24))
        key = path.read_text().strip()
    except OSError as exc:
        unusable(data_dir, exc)
    return settings.model_copy(update={"api_key": SecretStr(key)})


def write_private(path: Path, content: str) -> None:
    """Write a new file only its owner can read from its first byte (mkstemp's 0600, whatever
    the umask; a chmod afterwards leaves a window), linked under its name once whole; a file
    already there (another process's) is kept."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(content)
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


@contextmanager
def serving(
    settings: Settings, *, host: str, port: int, threads: int = 2
) -> Iterator[EmbeddedServer]:
    """An embedded server running for the block; a failure to start is one line (PORT_IN_USE).

    For a process that holds the data dir (`owning`): the server is its only executor.
    """
    # Imported here, not above: the server's imports (FastAPI, Celery, Alembic: over a second)
    # would come before a refusal of the data dir, which needs none of them.
    from cli.database import upgrade_schema
    from wiring.embedded import ApiDidNotStart, EmbeddedServer

    # The server upgrades its database as it starts; a schema it must not or cannot upgrade
    # (a newer version's) is said in one line here, not as a traceback from its start.
    upgrade_schema(settings.database_url)
    server = EmbeddedServer(settings, host=host, port=port, threads=threads, sole_executor=True)
    try:
        with server.running():
            yield server
    except ApiDidNotStart as exc:
        hint = "pass --port with another one (--port 0 for any free port)"
        fail(f"{exc}: {hint}", ExitCode.PORT_IN_USE)


def wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM (uvicorn runs on a thread, so the signals are ours)."""
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    stop.wait()
