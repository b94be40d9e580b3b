"""docker-compose.yml makes sense, and each of our commands runs natively as compose runs it.

No Docker engine runs here. The file is parsed and checked (commands, dependencies, healthchecks,
scaling, secrets, settings), then each of our services is started from its compose `command` and
environment, with the hostnames `postgres`, `redis` and `mailpit` translated to local servers: a
fresh PostgreSQL database, a private `redis-server` started from the compose redis command, and an
in-process SMTP sink.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.children import ends_with_this_process
from engine.settings import Settings
from migrations import current
from tests.conftest import POSTGRES_URL, require_binary, require_url
from tests.integration.harness import ROOT, SmtpSink, answers, free_port
from tests.patience import patience

COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {"postgres", "redis", "migrate", "api", "worker", "scheduler", "flower", "mailpit"}
OURS = {"migrate", "api", "worker", "scheduler", "flower"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# A server's image names a release (`redis:7.4.2-alpine`, `mailpit:v1.22.3`, `postgres:16.6-alpine`:
# PostgreSQL's minor is its patch release) or a digest, so that `docker compose pull` gets the same
# image, never whatever `:latest` or a bare major points to that day.
PINNED_IMAGE = re.compile(r"[\w./-]+(?::v?\d+\.\d+(?:\.\d+)?(?:-[\w.]+)?|@sha256:[0-9a-f]{64})")
# What the compose variables are set to for the native runs (an operator's .env file).
VARIABLES = {
    "AUTOMATIONS_SECRET_KEY": "compose-test-secret-0123456789abcdefghijklmnopqrstuvwxyz",
    "FLOWER_BASIC_AUTH": "ops:flower-test-password-of-32-bytes-or-more",
}
_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


# -- reading the file ------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(compose, dict) and isinstance(compose.get("services"), dict)
    return compose


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = load_compose()["services"]
    return found


def built_here(service: dict[str, Any]) -> bool:
    """Whether the service runs our image, built from the Dockerfile at the root."""
    build = service.get("build")
    if isinstance(build, dict):
        return build.get("context") in (".", "./") and build.get("dockerfile", "Dockerfile") == (
            "Dockerfile"
        )
    return build in (".", "./")


def cli_words(command: list[str]) -> list[str]:
    """The command's words before its first option: `["db", "upgrade"]`, `["api"]`."""
    words: list[str] = []
    for word in command:
        if word.startswith("-"):
            break
        words.append(word)
    return words


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `$$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg") or ""
        found = variables.get(name)
        missing = found is None or (found == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and missing:
            raise KeyError(f"{name}: {arg}")
        if op in (":-", "-") and missing:
            return arg
        return found or ""

    return _VARIABLE.sub(replace, value)


def environment(service: dict[str, Any], variables: dict[str, str]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):  # the `- NAME=value` form
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): interpolate(str(v), variables) for k, v in raw.items()}


def automations() -> str:
    found = shutil.which("automations", path=str(Path(sys.executable).parent))
    assert found, "the console script `automations` is installed by `pip install -e .`"
    return found


def help_pages(
    commands: list[list[str]],
) -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """`automations <words> --help` for each command, run side by side."""
    wanted = {tuple(cli_words(command)) for command in commands}
    started = {
        words: subprocess.Popen(
            [automations(), *words, "--help"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        for words in wanted
    }
    pages = {}
    for words, process in started.items():
        stdout, stderr = process.communicate(timeout=60)
        pages[words] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return pages


def assert_real_commands(commands: list[list[str]]) -> None:
    """Each command names a CLI command that exists and every option it passes is one of its own."""
    pages = help_pages(commands)
    for command in commands:
        page = pages[tuple(cli_words(command))]
        assert page.returncode == 0, f"`automations {' '.join(command)}`: {page.stderr}"
        assert "Usage: automations" in page.stdout
        for option in (word.split("=")[0] for word in command if word.startswith("--")):
            assert option in page.stdout, f"`automations {' '.join(command)}`: no {option}"


# -- the file, statically ----------------------------------------------------------------------


def test_every_service_is_there_and_ours_run_one_image() -> None:
    found = services()
    assert set(found) == SERVICES
    assert {name for name, service in found.items() if built_here(service)} == OURS
    assert len({found[name].get("image") for name in OURS}) == 1, "one image for every role"
    assert (ROOT / "Dockerfile").is_file()
    for name in SERVICES - OURS:
        assert PINNED_IMAGE.fullmatch(found[name]["image"]), (
            f"{name}: {found[name]['image']} is not pinned to a release (no :latest, no bare major)"
        )


def test_the_pin_check_refuses_floating_tags() -> None:
    for floating in ("axllent/mailpit:latest", "redis:7-alpine", "postgres:16", "postgres"):
        assert not PINNED_IMAGE.fullmatch(floating), floating
    for pinned in ("axllent/mailpit:v1.22.3", "redis:7.4.2-alpine", "postgres@sha256:" + "0" * 64):
        assert PINNED_IMAGE.fullmatch(pinned), pinned


def test_each_command_of_ours_is_a_real_cli_command() -> None:
    found = services()
    commands = [found[name]["command"] for name in sorted(OURS)]
    assert all(isinstance(command, list) for command in commands), "exec form, no shell"
    assert {tuple(cli_words(command)) for command in commands} == {
        ("db", "upgrade"),
        ("api",),
        ("worker",),
        ("scheduler",),
        ("flower",),
    }
    assert_real_commands(commands)


def test_dependencies_exist_and_their_conditions_make_sense() -> None:
    found = services()
    for name, service in found.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in found, f"{name} depends on an unknown service {target}"
            condition = spec["condition"]
            assert condition in CONDITIONS, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                check = found[target].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{target}: no healthcheck"
            if condition == "service_completed_successfully":
                assert found[target].get("restart") == "no", f"{target} is not a one-shot job"
    depends = {name: found[name].get("depends_on") or {} for name in found}
    assert depends["migrate"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("api", "worker", "scheduler"):
        assert depends[name]["migrate"] == {"condition": "service_completed_successfully"}
        assert depends[name]["redis"] == {"condition": "service_healthy"}
    assert depends["flower"]["redis"] == {"condition": "service_healthy"}
    for name, targets in depends.items():
        for target, spec in targets.items():
            if target in ("postgres", "redis"):
                assert spec["condition"] == "service_healthy", f"{name} -> {target}"

    # No cycles: a topological order exists.
    ordered: list[str] = []
    while len(ordered) < len(found):
        ready = [n for n in found if n not in ordered and set(depends[n]) <= set(ordered)]
        assert ready, f"a dependency cycle among {set(found) - set(ordered)}"
        ordered += ready


def test_healthchecks_of_the_servers_and_the_api() -> None:
    found = services()
    for name in ("postgres", "redis", "api", "mailpit"):
        assert found[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "pg_isready" in found["postgres"]["healthcheck"]["test"]
    assert found["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    api_check = " ".join(found["api"]["healthcheck"]["test"])
    assert "curl" not in api_check and "python" in api_check and "/ready" in api_check


def test_worker_scales_and_the_scheduler_does_not() -> None:
    found = services()
    worker, scheduler = found["worker"], found["scheduler"]
    # `docker compose up --scale worker=N` needs unnamed containers with no fixed host ports.
    assert "container_name" not in worker and "ports" not in worker
    assert (worker.get("deploy") or {}).get("replicas", 1) >= 1
    # Beat is exactly one per deployment.
    assert (scheduler.get("deploy") or {}).get("replicas", 1) == 1
    assert scheduler.get("scale", 1) == 1


def test_redis_keeps_every_message_and_the_data_lives_in_volumes() -> None:
    compose = load_compose()
    found = compose["services"]
    command = found["redis"]["command"]
    assert isinstance(command, list)
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert command[0] == "redis-server"
    assert options["--appendonly"] == "yes" and options["--maxmemory-policy"] == "noeviction"
    volumes = set(compose.get("volumes") or {})
    for name, path in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data")):
        mounts = [m.split(":") for m in found[name]["volumes"]]
        assert any(source in volumes and target == path for source, target in mounts), name


def test_ports_match_the_commands() -> None:
    found = services()
    assert found["api"]["ports"] == ["8000:8000"]
    assert found["api"]["command"][found["api"]["command"].index("--port") + 1] == "8000"
    assert found["flower"]["ports"] == ["5555:5555"]
    assert found["flower"]["command"][found["flower"]["command"].index("--port") + 1] == "5555"
    assert found["mailpit"]["ports"] == ["127.0.0.1:8025:8025"], "the UI has no login"
    assert "smtp://mailpit:1025" in found["api"]["environment"]["AUTOMATIONS_EMAIL_TRANSPORT_URL"]


def test_secrets_are_required_from_the_environment_not_written_here() -> None:
    found = services()
    for name in OURS:
        raw = found[name]["environment"]
        assert re.fullmatch(r"\$\{AUTOMATIONS_SECRET_KEY:\?[^}]+\}", raw["AUTOMATIONS_SECRET_KEY"])
        for key, value in raw.items():
            if re.search(r"SECRET|KEY|PASSWORD|AUTH", key):
                assert re.fullmatch(rf"\$\{{{key}:[?-][^}}]*\}}", value), f"{name}: {key}"
        with pytest.raises(KeyError, match="AUTOMATIONS_SECRET_KEY"):
            environment(found[name], {**VARIABLES, "AUTOMATIONS_SECRET_KEY": ""})
    flower = found["flower"]
    assert re.fullmatch(
        r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", flower["environment"]["FLOWER_BASIC_AUTH"]
    )
    assert not any("basic-auth" in word for word in flower["command"]), "no password in argv"
    with pytest.raises(KeyError, match="FLOWER_BASIC_AUTH"):
        environment(flower, {"AUTOMATIONS_SECRET_KEY": "x"})


def test_environment_is_shared_and_names_real_settings() -> None:
    found = services()
    shared = environment(found["api"], VARIABLES)
    fields = set(Settings.model_fields)
    for name in OURS:
        env = environment(found[name], VARIABLES)
        ours = {k: v for k, v in env.items() if k.startswith("AUTOMATIONS_")}
        # Every process sees the same database, broker, secret and transport.
        assert ours == shared, name
        unknown = {k for k in ours if k.removeprefix("AUTOMATIONS_").lower() not in fields}
        assert not unknown, f"{name}: not settings: {unknown}"
        assert set(env) - set(ours) <= {"FLOWER_BASIC_AUTH"}, name
    values = {k.removeprefix("AUTOMATIONS_").lower(): v for k, v in shared.items()}
    settings = Settings.model_validate(values)
    settings.check_production_ready()
    assert settings.env == "production" and settings.log_json is True
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert make_url(settings.database_url).host == "postgres"
    assert settings.broker_url == "redis://redis:6379/0"


# -- the commands, natively --------------------------------------------------------------------


@dataclass
class Deployment:
    """Our services' environment from the compose file, pointed at local servers."""

    env: dict[str, str]
    workdir: Path
    database_url: str
    redis_port: int
    migrate: subprocess.CompletedProcess[str]

    def command(self, name: str, **replace: str) -> list[str]:
        """The service's compose command, with options' values replaced (`port="1234"`)."""
        command = list(services()[name]["command"])
        for option, value in replace.items():
            flag = "--" + option.replace("_", "-")
            if flag in command:
                command[command.index(flag) + 1] = value
            else:
                command += [flag, value]
        return [automations(), *command]


def base_environment() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTOMATIONS_", "FLOWER_", "CELERY_"))
    }


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM, as `docker compose stop` sends, then SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return -signal.SIGKILL
    return process.returncode


class Started:
    """A service's process, its log, and a guaranteed stop."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}-{time.monotonic_ns()}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=ends_with_this_process(),
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + patience(timeout)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited early:\n{self.log()[-3000:]}")
            try:
                if check():
                    return
            except (httpx.HTTPError, OSError, redis.RedisError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: no {what} in {timeout} s:\n{self.log()[-3000:]}")

    def stop(self) -> int:
        return stop(self.process)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[str, list[str], dict[str, str]], Started]]:
    started: list[Started] = []

    def _start(name: str, argv: list[str], env: dict[str, str]) -> Started:
        started.append(Started(name, argv, env, tmp_path))
        return started[-1]

    yield _start
    for service in reversed(started):
        service.stop()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A fresh database, the compose redis command on a free port, then the migrate service."""
    require_url("PostgreSQL", POSTGRES_URL)
    require_binary("redis-server")
    workdir = tmp_path_factory.mktemp("compose")
    found = services()

    base = make_url(POSTGRES_URL)
    name = f"{base.database}_compose"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")

    def drop_database() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    with contextlib.ExitStack() as cleanup:
        cleanup.callback(admin.dispose)
        drop_database()
        cleanup.callback(drop_database)
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        database_url = base.set(database=name).render_as_string(hide_password=False)

        # The sink first: it binds a free port of its own at once. Started after the probe below,
        # it was once given the port the probe had just let go, before redis-server took it.
        sink = SmtpSink()
        sink.start()
        cleanup.callback(sink.stop)

        # The compose redis command, on a free port: a broker of our own, whatever else runs.
        redis_port = free_port()
        redis_log = cleanup.enter_context((workdir / "redis.log").open("wb"))
        redis_server = subprocess.Popen(
            [
                *found["redis"]["command"],
                *("--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(workdir)),
            ],
            stdout=redis_log,
            stderr=subprocess.STDOUT,
        )
        cleanup.callback(stop, redis_server)

        deadline = time.monotonic() + patience(10)
        client = redis.Redis(port=redis_port)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert redis_server.poll() is None, (workdir / "redis.log").read_text()
                assert time.monotonic() < deadline, "redis-server did not answer in 10 s"
                time.sleep(0.05)
        client.close()

        env = {**base_environment(), **environment(found["api"], VARIABLES)}
        compose_db = make_url(env["AUTOMATIONS_DATABASE_URL"])
        assert (compose_db.host, compose_db.port) == ("postgres", 5432)
        env["AUTOMATIONS_DATABASE_URL"] = database_url
        env["AUTOMATIONS_BROKER_URL"] = env["AUTOMATIONS_BROKER_URL"].replace(
            "redis://redis:6379/", f"redis://127.0.0.1:{redis_port}/"
        )
        env["AUTOMATIONS_EMAIL_TRANSPORT_URL"] = env["AUTOMATIONS_EMAIL_TRANSPORT_URL"].replace(
            "smtp://mailpit:1025", sink.url
        )
        assert "redis:6379" not in env["AUTOMATIONS_BROKER_URL"]
        assert "mailpit" not in env["AUTOMATIONS_EMAIL_TRANSPORT_URL"]

        # The migrate service runs first, as the others wait for it to complete.
        migrate = subprocess.run(
            [automations(), *found["migrate"]["command"]],
            cwd=workdir,
            preexec_fn=ends_with_this_process(),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        yield Deployment(env, workdir, database_url, redis_port, migrate)


def test_the_servers_healthchecks_pass_natively(deployment: Deployment) -> None:
    found = services()
    # The compose redis command, run natively: append-only on, no eviction.
    client = redis.Redis(port=deployment.redis_port)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    client.close()
    redis_check = found["redis"]["healthcheck"]["test"][1:]
    answer = subprocess.run(
        [require_binary(redis_check[0]), "-p", str(deployment.redis_port), *redis_check[1:]],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert answer.returncode == 0 and answer.stdout.strip() == "PONG"

    pg_check = found["postgres"]["healthcheck"]["test"][1:]
    port = str(make_url(POSTGRES_URL).port or 5432)
    answer = subprocess.run(
        [require_binary(pg_check[0]), *pg_check[1:], "-p", port],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr


def test_migrate_upgrades_an_empty_database_and_again_does_nothing(
    deployment: Deployment,
) -> None:
    first = deployment.migrate
    assert first.returncode == 0, first.stdout + first.stderr
    assert "database at revision" in first.stdout
    revision = current(deployment.database_url)
    assert revision is not None and revision in first.stdout
    # `docker compose up` runs migrate every time: at head, it succeeds and changes nothing.
    again = subprocess.run(
        deployment.command("migrate"),
        cwd=deployment.workdir,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert current(deployment.database_url) == revision


def test_api_answers_ready_passes_its_healthcheck_and_stops_on_sigterm(
    deployment: Deployment, start: Callable[..., Started]
) -> None:
    assert deployment.migrate.returncode == 0
    port = free_port()
    api = start("api", deployment.command("api", port=str(port)), deployment.env)
    api.wait_for(
        lambda: answers(f"http://127.0.0.1:{port}/ready", timeout=2),
        "200 on /ready",
    )
    ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).json()
    assert ready == {"status": "ok", "database": "ok", "broker": "ok"}

    # The compose healthcheck, run as the container runs it (python -c, no curl).
    check = services()["api"]["healthcheck"]["test"]
    argv = [
        sys.executable if w == "python" else w.replace(":8000/", f":{port}/") for w in check[1:]
    ]
    healthy = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    assert healthy.returncode == 0, healthy.stderr

    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (exit status 143 in a
    # container), so that a supervisor sees why it stopped. Killed after the timeout would be -9.
    assert api.stop() in (0, -signal.SIGTERM), api.log()[-3000:]
    assert "Application shutdown complete" in api.log()
    assert "Traceback" not in api.log()


def test_api_refuses_to_start_without_a_secret_key(deployment: Deployment) -> None:
    env = {k: v for k, v in deployment.env.items() if k != "AUTOMATIONS_SECRET_KEY"}
    refused = subprocess.run(
        deployment.command("api", port=str(free_port())),
        cwd=deployment.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 5, "bad settings (cli/README.md's exit codes)"
    assert "AUTOMATIONS_SECRET_KEY" in refused.stderr and "Traceback" not in refused.stderr


def test_worker_answers_a_ping_and_runs_the_schedulers_sweeper_ticks(
    deployment: Deployment, start: Callable[..., Started]
) -> None:
    from tasks.app import create_celery_app

    assert deployment.migrate.returncode == 0
    # Ticks every second, so that one is sent and executed within the test.
    env = {**deployment.env, "AUTOMATIONS_SWEEPER_INTERVAL_SECONDS": "1"}
    schedule = deployment.workdir / "beat-schedule"
    worker = start("worker", deployment.command("worker"), env)
    scheduler = start(
        "scheduler", deployment.command("scheduler", schedule_file=str(schedule)), env
    )

    app = create_celery_app(Settings(broker_url=env["AUTOMATIONS_BROKER_URL"]))
    try:
        replies: list[dict[str, Any]] = []

        def pinged() -> bool:
            replies[:] = app.control.ping(timeout=0.5)
            return bool(replies)

        worker.wait_for(pinged, "answer to a Celery ping")
        (name,) = (next(iter(reply)) for reply in replies)

        def ticks() -> int:
            stats = app.control.inspect(destination=[name], timeout=1).stats() or {}
            return int(stats.get(name, {}).get("total", {}).get("automations.sweeper.tick", 0))

        scheduler.wait_for(lambda: ticks() >= 1, "sweeper tick executed by the worker")
        queues = app.control.inspect(destination=[name], timeout=1).active_queues() or {}
        assert {q["name"] for q in queues[name]} == {"automations", "automations.sweeper"}
    finally:
        app.close()

    assert scheduler.process.poll() is None, "the scheduler stays up"
    assert list(deployment.workdir.glob("beat-schedule*")), "beat writes its schedule file"
    assert scheduler.stop() == 0, scheduler.log()[-3000:]
    assert worker.stop() == 0, worker.log()[-3000:]
    for service in (worker, scheduler):
        assert "Traceback" not in service.log(), service.log()[-3000:]


def test_flower_needs_its_basic_auth(deployment: Deployment, start: Callable[..., Started]) -> None:
    port = free_port()
    flower_only = environment(services()["flower"], VARIABLES)
    env = {**deployment.env, "FLOWER_BASIC_AUTH": flower_only["FLOWER_BASIC_AUTH"]}
    user, password = VARIABLES["FLOWER_BASIC_AUTH"].split(":", 1)
    url = f"http://127.0.0.1:{port}"
    flower = start("flower", deployment.command("flower", port=str(port)), env)
    flower.wait_for(lambda: answers(url + "/", 401, timeout=2), "401 without auth")

    assert httpx.get(url + "/api/workers", timeout=5).status_code == 401
    assert httpx.get(url + "/", auth=(user, "wrong"), timeout=5).status_code == 401
    assert httpx.get(url + "/", auth=(user, password), timeout=5).status_code == 200
    workers = httpx.get(url + "/api/workers", auth=(user, password), timeout=10)
    assert workers.status_code == 200 and isinstance(workers.json(), dict)

    assert flower.stop() == 0, flower.log()[-3000:]
    assert "Traceback" not in flower.log()
