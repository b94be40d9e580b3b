"""Every way the server and operator commands fail: one line on stderr, a hint, its exit code.

The installed `automations` script runs in a folder of its own, as a newcomer runs it, with no
AUTOMATIONS_* variable but those a test sets.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from importlib.metadata import version
from pathlib import Path

import pytest

import migrations
from cli.failures import ExitCode
from tests.integration.harness import free_port
from tests.integration.test_cli_server import automations

DEFAULT_URL = "sqlite:///data/automations.sqlite3"


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATIONS_")}
    return subprocess.run(
        [automations(), *args],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database at the schema's head, made once by `automations db upgrade`: the tests
    that start from one get a copy (about a second each, saved)."""
    folder = tmp_path_factory.mktemp("upgraded")
    done = run("db", "upgrade", cwd=folder, env={"AUTOMATIONS_DATABASE_URL": "sqlite:///x.sqlite3"})
    assert done.returncode == 0, done.stderr
    return folder / "x.sqlite3"


def test_db_upgrade_needs_only_the_database_url(tmp_path: Path) -> None:
    """Every other setting may be unusable: the commands that use one refuse it (below)."""
    env = {
        "AUTOMATIONS_DATABASE_URL": "sqlite:///x.sqlite3",
        "AUTOMATIONS_EMAIL_TRANSPORT_URL": "bogus://mail",
        "AUTOMATIONS_BROKER_URL": "redis://:hun/ter2@127.0.0.1:1/9",
        "AUTOMATIONS_RATE_LIMIT_REDIS_URL": "redis://127.0.0.1:1/9?x=1",
        "AUTOMATIONS_EMAIL_API_KEY": "re_provider_key\n",
    }
    done = run("db", "upgrade", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert files(tmp_path) == ["x.sqlite3"]


def failed(done: subprocess.CompletedProcess[str], code: ExitCode) -> str:
    """The one `error:` line of a command that failed with `code`, and nothing else."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert done.stdout == "", done.stdout
    return lines[0]


def files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


# -- no schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [("domains", "verify", "example.com"), ("keys", "create", "ops")])
def test_no_database_says_run_db_upgrade_and_creates_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    line = failed(run(*args, cwd=tmp_path), ExitCode.NO_SCHEMA)
    assert DEFAULT_URL in line and "run automations db upgrade" in line
    assert files(tmp_path) == [], "nothing is created, not even data/"


def test_no_database_points_at_the_demos_when_it_is_there(tmp_path: Path) -> None:
    demo = tmp_path / "data" / "demo" / "automations.sqlite3"
    demo.parent.mkdir(parents=True)
    demo.touch()
    line = failed(run("domains", "verify", "example.com", cwd=tmp_path), ExitCode.NO_SCHEMA)
    assert "AUTOMATIONS_DATABASE_URL=sqlite:///data/demo/automations.sqlite3" in line


@pytest.mark.parametrize("args", [("keys", "create", "ops"), ("api",), ("worker",)])
def test_an_empty_database_has_no_schema(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "empty.sqlite3").touch()
    env = {"AUTOMATIONS_DATABASE_URL": "sqlite:///empty.sqlite3"}
    if args == ("api",):
        args = ("api", "--port", str(free_port()))
    line = failed(run(*args, cwd=tmp_path, env=env), ExitCode.NO_SCHEMA)
    assert "sqlite:///empty.sqlite3 has no schema: run automations db upgrade" in line


def test_an_older_schema_asks_for_the_upgrade(tmp_path: Path) -> None:
    env = {"AUTOMATIONS_DATABASE_URL": "sqlite:///old.sqlite3"}
    assert run("db", "upgrade", "--revision", "0001", cwd=tmp_path, env=env).returncode == 0
    line = failed(run("keys", "create", "ops", cwd=tmp_path, env=env), ExitCode.NO_SCHEMA)
    assert f"at schema revision 0001, this version needs {migrations.head()}" in line
    assert "run automations db upgrade" in line
    assert run("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    assert run("keys", "create", "ops", cwd=tmp_path, env=env).returncode == 0


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (("worker", "--pool", "threads"), {}, "--pool threads: the pool is prefork or solo"),
        (("worker", "--pool", "solo", "--concurrency", "2"), {}, "runs one process, not 2"),
        (("worker", "--pool", "solo"), {"AUTOMATIONS_WORKER_CONCURRENCY": "4"}, "not 4"),
    ],
)
def test_a_worker_pool_we_do_not_run_is_refused_before_anything_starts(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], said: str
) -> None:
    line = failed(run(*args, cwd=tmp_path, env=env), ExitCode.BAD_INPUT)
    assert said in line
    assert files(tmp_path) == [], "nothing is created, not even data/"


def test_a_schedule_file_in_no_folder_is_refused_before_beat_starts(tmp_path: Path) -> None:
    line = failed(
        run("scheduler", "--schedule-file", "gone/beat", cwd=tmp_path), ExitCode.BAD_INPUT
    )
    assert "--schedule-file gone/beat: gone is not a folder" in line
    assert files(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("api", "--port", "70000"), "--port"),  # was served on port 4464
        (("api", "--port", "-1"), "--port"),  # was "unknown host", exit 8
        (("api", "--workers", "0"), "--workers"),
        (("dev", "--port", "65536", "--data-dir", "state"), "--port"),
        (("demo", "--port", "70000", "--data-dir", "state"), "--port"),
        (("dev", "--threads", "0", "--data-dir", "state"), "--threads"),  # steps never ran
        (("flower", "--port", "99999"), "--port"),
        (("worker", "--concurrency", "-1"), "--concurrency"),  # was Celery's traceback
        (("worker", "--concurrency", "0"), "--concurrency"),
    ],
)
def test_an_option_out_of_range_is_a_usage_error(
    tmp_path: Path, args: tuple[str, ...], option: str
) -> None:
    done = run(*args, cwd=tmp_path, timeout=20)
    assert done.returncode == ExitCode.BAD_INPUT, (done.stdout, done.stderr)
    assert f"Invalid value for '{option}'" in done.stderr and "Traceback" not in done.stderr
    assert files(tmp_path) == []


@pytest.mark.parametrize("value", ["-1", "0"])
def test_a_worker_concurrency_below_one_is_a_bad_setting(tmp_path: Path, value: str) -> None:
    env = {"AUTOMATIONS_WORKER_CONCURRENCY": value}
    line = failed(run("worker", cwd=tmp_path, env=env), ExitCode.BAD_SETTINGS)
    assert "AUTOMATIONS_WORKER_CONCURRENCY: Input should be greater than or equal to 1" in line


def sqlite_tables(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        return [name for (name,) in rows]


def test_another_applications_tables_are_refused_untouched(tmp_path: Path) -> None:
    """A `contacts` table with no revision: the upgrade failed on "already exists", reported
    as "cannot connect to the database" (exit 6)."""
    with closing(sqlite3.connect(tmp_path / "shop.sqlite3")) as conn:
        conn.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, phone TEXT)")
        conn.commit()
    env = {"AUTOMATIONS_DATABASE_URL": "sqlite:///shop.sqlite3"}
    line = failed(run("db", "upgrade", cwd=tmp_path, env=env), ExitCode.NO_SCHEMA)
    assert "has no automations schema revision but already holds tables" in line
    assert "(contacts)" in line and "point AUTOMATIONS_DATABASE_URL at an empty database" in line
    assert sqlite_tables(tmp_path / "shop.sqlite3") == ["contacts"]


def plant_revision(path: Path, revision: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
        conn.commit()


@pytest.mark.parametrize("args", [("db", "upgrade"), ("keys", "create", "ops"), ("worker",)])
def test_a_revision_this_version_does_not_know_is_named(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """Another application's Alembic revision, or a newer automations': `db upgrade` said
    "cannot upgrade to 'head'" with exit 2, as if --revision were wrong."""
    plant_revision(tmp_path / "other.sqlite3", "a1b2c3d4e5f6")
    env = {"AUTOMATIONS_DATABASE_URL": "sqlite:///other.sqlite3"}
    line = failed(run(*args, cwd=tmp_path, env=env), ExitCode.NO_SCHEMA)
    assert "is at schema revision a1b2c3d4e5f6, which this version does not know" in line
    assert f"its latest is {migrations.head()}" in line
    assert "a newer version of automations" in line and "another application" in line
    assert sqlite_tables(tmp_path / "other.sqlite3") == ["alembic_version"]


def test_a_data_dir_a_newer_version_upgraded_is_one_line(tmp_path: Path) -> None:
    """dev upgrades its database as it starts: a newer version's revision ended in alembic's
    traceback. (demo starts each time from an emptied data dir.)"""
    plant_revision(tmp_path / "state" / "automations.sqlite3", "0999")
    args = ("dev", "--data-dir", "state", "--port", str(free_port()))
    done = run(*args, cwd=tmp_path)
    assert done.returncode == ExitCode.NO_SCHEMA, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]  # after alembic's own log lines, if any
    assert last.startswith("error: the database at sqlite:///") and "revision 0999" in last


def test_a_migration_that_fails_says_why_and_where_the_database_is(tmp_path: Path) -> None:
    """A migration's own error (here a column someone added by hand) was reported as
    "cannot connect to the database" (exit 6); the database keeps its revision."""
    env = {"AUTOMATIONS_DATABASE_URL": "sqlite:///hand.sqlite3"}
    assert run("db", "upgrade", "--revision", "0006", cwd=tmp_path, env=env).returncode == 0
    with closing(sqlite3.connect(tmp_path / "hand.sqlite3")) as conn:
        conn.execute("ALTER TABLE bulk_items ADD COLUMN retries INTEGER")
        conn.commit()
    line = failed(run("db", "upgrade", cwd=tmp_path, env=env), ExitCode.NO_SCHEMA)
    assert "upgrading the database at sqlite:///hand.sqlite3 failed: " in line
    assert "duplicate column name: retries" in line
    assert "the database is at revision 0006" in line and "cannot connect" not in line


# -- unreachable database ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("db", "upgrade"), ("keys", "create", "ops"), ("domains", "verify", "example.com")]
)
def test_an_unreachable_database_is_one_line_without_its_password(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    closed = free_port()
    url = f"postgresql+psycopg://ops:hunter2@127.0.0.1:{closed}/automations"
    env = {"AUTOMATIONS_DATABASE_URL": url}
    line = failed(run(*args, cwd=tmp_path, env=env), ExitCode.DATABASE_UNREACHABLE)
    assert (
        f"cannot connect to the database at postgresql+psycopg://ops:***@127.0.0.1:{closed}" in line
    )
    assert "hunter2" not in line and "AUTOMATIONS_DATABASE_URL" in line


def test_a_sqlite_file_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    env = {"AUTOMATIONS_DATABASE_URL": "sqlite:///file/automations.sqlite3"}
    failed(run("db", "upgrade", cwd=tmp_path, env=env), ExitCode.DATABASE_UNREACHABLE)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
@pytest.mark.parametrize("args", [("db", "upgrade"), ("keys", "create", "ops")])
def test_an_in_memory_database_is_a_bad_setting(
    tmp_path: Path, url: str, args: tuple[str, ...]
) -> None:
    """`db upgrade` migrated a database gone with its connection, said "database at revision
    None" and exit 0; every other command then asked for the upgrade."""
    env = {"AUTOMATIONS_DATABASE_URL": url}
    line = failed(run(*args, cwd=tmp_path, env=env), ExitCode.BAD_SETTINGS)
    assert "AUTOMATIONS_DATABASE_URL sqlite://" in line
    assert "cannot be used: an in-memory SQLite database keeps nothing" in line


def test_a_database_url_without_its_driver_is_a_bad_setting(tmp_path: Path) -> None:
    env = {"AUTOMATIONS_DATABASE_URL": "mysql://ops@127.0.0.1/automations"}
    line = failed(run("db", "upgrade", cwd=tmp_path, env=env), ExitCode.BAD_SETTINGS)
    assert "postgresql+psycopg://" in line


@pytest.mark.parametrize(
    "args", [("db", "upgrade"), ("keys", "create", "ops"), ("api", "--port", "0")]
)
def test_a_database_url_whose_port_is_not_a_number_is_a_bad_setting(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    env = {"AUTOMATIONS_DATABASE_URL": "postgresql+psycopg://ops:hunter2@127.0.0.1:5o32/x"}
    line = failed(run(*args, cwd=tmp_path, env=env), ExitCode.BAD_SETTINGS)
    assert "AUTOMATIONS_DATABASE_URL" in line and "port is not a number" in line
    assert "hunter2" not in line


# -- port in use -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["dev", "demo", "api"])
def test_a_taken_port_suggests_another(tmp_path: Path, taken_port: int, command: str) -> None:
    args = [command, "--port", str(taken_port)]
    args += ["--host", "127.0.0.1"] if command == "api" else ["--data-dir", "state"]
    env = {"AUTOMATIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'never.sqlite3'}"}
    line = failed(run(*args, cwd=tmp_path, env=env), ExitCode.PORT_IN_USE)
    assert f"cannot listen on 127.0.0.1:{taken_port}: address already in use" in line
    assert "--port" in line
    assert not (tmp_path / "state").exists() and not (tmp_path / "never.sqlite3").exists()


@pytest.mark.parametrize("command", ["dev", "demo", "api"])
def test_a_host_that_does_not_resolve_is_bad_input_not_a_taken_port(
    tmp_path: Path, command: str
) -> None:
    args = [command, "--host", "no-such-host.invalid", "--port", str(free_port())]
    args += [] if command == "api" else ["--data-dir", "state"]
    line = failed(run(*args, cwd=tmp_path), ExitCode.BAD_INPUT)
    assert line.startswith("error: --host no-such-host.invalid: unknown host")
    assert "--port" not in line and files(tmp_path) == []


# -- bad settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("db", "upgrade"), ("keys", "create", "ops"), ("dev", "--data-dir", "state")]
)
def test_bad_settings_name_the_variable_and_the_rule(tmp_path: Path, args: tuple[str, ...]) -> None:
    env = {"AUTOMATIONS_COUNTDOWN_HORIZON_SECONDS": "-1", "AUTOMATIONS_ENV": "prod"}
    if args[0] == "dev":
        args = (*args, "--port", str(free_port()))
    line = failed(run(*args, cwd=tmp_path, env=env), ExitCode.BAD_SETTINGS)
    assert line.startswith("error: invalid configuration: ")
    assert "AUTOMATIONS_COUNTDOWN_HORIZON_SECONDS: Input should be greater than 0" in line
    if args[0] == "dev":  # which sets AUTOMATIONS_ENV itself, and writes nothing before
        assert files(tmp_path) == []
    else:
        assert "AUTOMATIONS_ENV: Input should be 'development', 'production' or 'test'" in line


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("AUTOMATIONS_FAULT_INJECTION", "bogus", "Value error, unknown fault 'bogus'"),
        ("AUTOMATIONS_RATE_LIMIT_REDIS_URL", "redis://127.0.0.1:6379o/9", "port is not a number"),
        ("AUTOMATIONS_RATE_LIMIT_REDIS_URL", "redis://127.0.0.1:1/9?x=1", "unknown option 'x'"),
    ],
)
def test_a_setting_the_api_reads_once_started_is_checked_before(
    tmp_path: Path, upgraded: Path, variable: str, value: str, said: str
) -> None:
    """Both ended in a traceback from inside uvicorn's start."""
    env = {"AUTOMATIONS_DATABASE_URL": "sqlite:///x.sqlite3"}
    shutil.copy(upgraded, tmp_path / "x.sqlite3")
    done = run("api", "--port", "0", cwd=tmp_path, env={**env, variable: value})
    line = failed(done, ExitCode.BAD_SETTINGS)
    assert variable in line and said in line


@pytest.mark.parametrize(
    "args", [("keys", "create", "ops"), ("api", "--port", "0"), ("worker",), ("scheduler",)]
)
def test_an_unknown_clock_is_a_bad_setting_in_every_process(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """The api ended in a traceback, and a worker or the scheduler started with it."""
    closed_broker = f"redis://127.0.0.1:{free_port()}/0"  # should the check fail, no Redis is hit
    env = {"AUTOMATIONS_CLOCK": "bogus", "AUTOMATIONS_BROKER_URL": closed_broker}
    line = failed(run(*args, cwd=tmp_path, env=env, timeout=30), ExitCode.BAD_SETTINGS)
    assert "AUTOMATIONS_CLOCK: String should match pattern" in line


def test_an_unknown_revision_is_bad_input(tmp_path: Path) -> None:
    env = {"AUTOMATIONS_DATABASE_URL": "sqlite:///new.sqlite3"}
    done = run("db", "upgrade", "--revision", "9999_nowhere", cwd=tmp_path, env=env)
    assert "9999_nowhere" in failed(done, ExitCode.BAD_INPUT)


@pytest.mark.parametrize("revision", ["", "  "])
def test_an_empty_revision_is_bad_input(tmp_path: Path, revision: str) -> None:
    """An empty --revision ended in an AssertionError deep in alembic, with a traceback."""
    env = {"AUTOMATIONS_DATABASE_URL": "sqlite:///new.sqlite3"}
    done = run("db", "upgrade", "--revision", revision, cwd=tmp_path, env=env)
    assert "--revision is empty" in failed(done, ExitCode.BAD_INPUT)
    assert files(tmp_path) == []


@pytest.mark.parametrize(
    ("variable", "value", "args"),
    [
        ("AUTOMATIONS_EMAIL_TRANSPORT_URL", "bogus://mail", ("keys", "create", "ops")),
        ("AUTOMATIONS_EMAIL_TRANSPORT_URL", "bogus://mail", ("api", "--port", "0")),
        ("AUTOMATIONS_BROKER_URL", "nope://broker", ("worker",)),
        ("AUTOMATIONS_BROKER_URL", "nope://broker", ("scheduler",)),
        ("AUTOMATIONS_BROKER_URL", "nope://broker", ("flower", "--port", "0")),
        ("AUTOMATIONS_BROKER_URL", "redis://127.0.0.1:6379o/9", ("worker",)),
        ("AUTOMATIONS_BROKER_URL", "redis://127.0.0.1:99999/9", ("scheduler",)),
        ("AUTOMATIONS_BROKER_URL", "redis://127.0.0.1:6379/nine", ("flower", "--port", "0")),
        ("AUTOMATIONS_BROKER_URL", "redis://127.0.0.1:6379o/9", ("api", "--port", "0")),
        # A closed port: should the check miss it, the worker reaches no Redis.
        ("AUTOMATIONS_BROKER_URL", "redis://127.0.0.1:1/9?x=1", ("worker",)),
        ("AUTOMATIONS_BROKER_URL", "redis://127.0.0.1:1/9?x=1", ("api", "--port", "0")),
    ],
)
def test_an_unusable_url_is_named_before_anything_starts(
    tmp_path: Path, upgraded: Path, variable: str, value: str, args: tuple[str, ...]
) -> None:
    env = {"AUTOMATIONS_DATABASE_URL": "sqlite:///x.sqlite3", variable: value}
    shutil.copy(upgraded, tmp_path / "x.sqlite3")
    line = failed(run(*args, cwd=tmp_path, env=env), ExitCode.BAD_SETTINGS)
    assert line.startswith(f"error: {variable}: ") and value.split(":")[0] in line


@pytest.mark.parametrize("args", [("worker",), ("api", "--port", "0")])
def test_an_unusable_broker_url_is_named_before_the_database_is_reached(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """A process refused for its settings touches nothing: not even a database that is down."""
    env = {
        "AUTOMATIONS_DATABASE_URL": f"postgresql+psycopg://127.0.0.1:{free_port()}/automations",
        "AUTOMATIONS_BROKER_URL": "nope://broker",
    }
    line = failed(run(*args, cwd=tmp_path, env=env), ExitCode.BAD_SETTINGS)
    assert line.startswith("error: AUTOMATIONS_BROKER_URL: "), line


@pytest.mark.parametrize(
    ("variable", "value", "args"),
    [
        # A `/` in a password ends the host: urllib quoted the rest as the "port".
        ("AUTOMATIONS_BROKER_URL", "redis://:hun/ter2@127.0.0.1:1/9", ("worker",)),
        ("AUTOMATIONS_BROKER_URL", "redis://:hun/ter2@127.0.0.1:1/9", ("api", "--port", "0")),
        ("AUTOMATIONS_RATE_LIMIT_REDIS_URL", "redis://:hun/ter2@127.0.0.1:1/9", ("api",)),
        # httpx's traceback quoted it; with a well-formed one, httpx sent it as Basic auth.
        ("AUTOMATIONS_EMAIL_TRANSPORT_URL", "resend+https://ops:hun/ter2@mail.test", ("api",)),
        ("AUTOMATIONS_EMAIL_TRANSPORT_URL", "resend+https://ops:hunter2@mail.test", ("worker",)),
        ("AUTOMATIONS_EMAIL_TRANSPORT_URL", "resend+https://mail.test:99999", ("api",)),
    ],
)
def test_a_password_in_an_unusable_url_is_not_repeated(
    tmp_path: Path, upgraded: Path, variable: str, value: str, args: tuple[str, ...]
) -> None:
    env = {
        "AUTOMATIONS_DATABASE_URL": "sqlite:///x.sqlite3",
        "AUTOMATIONS_EMAIL_API_KEY": "re_provider_key",
        variable: value,
    }
    shutil.copy(upgraded, tmp_path / "x.sqlite3")
    if args == ("api",):
        args = ("api", "--port", "0")
    line = failed(run(*args, cwd=tmp_path, env=env, timeout=30), ExitCode.BAD_SETTINGS)
    assert line.startswith(f"error: {variable}: ")
    assert "hun" not in line and "ter2" not in line and "re_provider_key" not in line


def test_a_provider_key_with_its_newline_is_refused_without_repeating_it(
    tmp_path: Path, upgraded: Path
) -> None:
    env = {
        "AUTOMATIONS_DATABASE_URL": "sqlite:///x.sqlite3",
        "AUTOMATIONS_EMAIL_TRANSPORT_URL": "resend+https://api.resend.com",
        "AUTOMATIONS_EMAIL_API_KEY": "re_provider_key\n",
    }
    shutil.copy(upgraded, tmp_path / "x.sqlite3")
    for args in (("api", "--port", "0"), ("worker",), ("keys", "create", "ops")):
        line = failed(run(*args, cwd=tmp_path, env=env, timeout=30), ExitCode.BAD_SETTINGS)
        assert line.startswith("error: AUTOMATIONS_EMAIL_API_KEY holds")
        assert "re_provider_key" not in line


def test_a_password_in_the_database_urls_query_is_hidden(tmp_path: Path) -> None:
    closed = free_port()
    url = f"postgresql+psycopg://ops@127.0.0.1:{closed}/automations?password=hunter2"
    env = {"AUTOMATIONS_DATABASE_URL": url}
    line = failed(run("db", "upgrade", cwd=tmp_path, env=env), ExitCode.DATABASE_UNREACHABLE)
    assert f"postgresql+psycopg://ops@127.0.0.1:{closed}/automations?password=***" in line
    assert "hunter2" not in line


def test_api_refuses_production_without_a_secret(tmp_path: Path) -> None:
    env = {"AUTOMATIONS_ENV": "production"}
    line = failed(
        run("api", "--port", str(free_port()), cwd=tmp_path, env=env), ExitCode.BAD_SETTINGS
    )
    assert "AUTOMATIONS_SECRET_KEY" in line


# -- version -----------------------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    done = run("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == f"automations {version('automations')}\n"
