"""The Dockerfile builds the one image compose runs: slim Python, non-root, pyproject installed.

No Docker engine runs here, so the file is parsed. Its install steps are checked against
pyproject.toml, and what they install is built natively (setuptools' build_py on a copy of exactly
what the COPY lines bring in) to see that the installed packages carry every file they read.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from tests.integration.harness import ROOT
from tests.integration.test_compose import (
    assert_real_commands,
    built_here,
    cli_words,
    services,
)

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
OPERATIONS = ROOT / "docs" / "operations.md"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    result = []
    for line in joined:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def packages() -> list[str]:
    """The top-level packages pyproject installs (`include = ["engine*", ...]`)."""
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.rstrip("*").rstrip(".") for pattern in include})


def copied_sources() -> list[str]:
    sources: list[str] = []
    for keyword, args in instructions():
        if keyword == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            sources += [w.rstrip("/") for w in words[:-1]]
    return sources


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore (no `!` exceptions in ours) keeps `path` out of the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.strip("/")
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
    return False


def dockerignore() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "update ignored() for exceptions"
    return patterns


# -- the file ----------------------------------------------------------------------------------


def test_base_image_is_a_slim_python_that_pyproject_allows() -> None:
    froms = [args for keyword, args in instructions() if keyword == "FROM"]
    assert len(froms) == 1, "one stage, one image for every role"
    found = re.fullmatch(r"python:(\d+)\.(\d+)\.\d+-slim(?:-\w+)?", froms[0])
    assert found, f"not a slim Python image pinned to a patch release: {froms[0]}"
    minimum = re.fullmatch(r">=\s*(\d+)\.(\d+)", pyproject()["project"]["requires-python"])
    assert minimum
    version = (int(found[1]), int(found[2]))
    assert version >= (int(minimum[1]), int(minimum[2]))


def test_runs_as_a_non_root_user_it_creates() -> None:
    steps = instructions()
    keywords = [keyword for keyword, _ in steps]
    entrypoint_at = keywords.index("ENTRYPOINT")
    users = [args for keyword, args in steps[:entrypoint_at] if keyword == "USER"]
    assert users, "USER is set before ENTRYPOINT"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert "USER" not in keywords[entrypoint_at:], "no switching back after the entrypoint"
    created = [args for keyword, args in steps if keyword == "RUN" and "useradd" in args]
    assert created and re.search(rf"\buseradd\b.*\b{re.escape(user)}\b", created[0])


def test_environment_workdir_and_ports() -> None:
    steps = instructions()
    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", env), "logs reach `docker compose logs` at once"
    assert any(keyword == "WORKDIR" for keyword, _ in steps)
    exposed = {p for keyword, args in steps if keyword == "EXPOSE" for p in args.split()}
    compose = services()
    for name in ("api", "flower"):
        command = compose[name]["command"]
        assert command[command.index("--port") + 1] in exposed, name


def test_copies_the_packages_and_only_what_is_in_the_build_context() -> None:
    sources = copied_sources()
    readme = pyproject()["project"]["readme"]
    assert {"pyproject.toml", "constraints.txt", readme, *packages()} <= set(sources)
    patterns = dockerignore()
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for heavy in (".git", ".venv", ".venv-ci", "data", "tests/x.py", "engine/__pycache__/x.pyc"):
        assert ignored(heavy, patterns), f"{heavy} should stay out of the build context"


def test_installs_the_dependencies_pyproject_declares_then_the_project() -> None:
    runs = [args for keyword, args in instructions() if keyword == "RUN"]
    installs = [run for run in runs if "pip install" in run]
    assert all("--no-cache-dir" in run for run in installs)
    # pip first, at the version the lock pins, before anything else is installed with it.
    assert re.fullmatch(r"pip install --no-cache-dir -c constraints\.txt pip", installs[0])
    # The dependencies, read from pyproject.toml: run that very command on ours.
    (deps_step,) = [run for run in installs if "pyproject.toml" in run]
    command = deps_step.split("&&")[0].split(">")[0].strip()
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-c"]
    listed = subprocess.run(
        [sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert listed.stdout.split() == pyproject()["project"]["dependencies"]
    # Every one of them, and what they pull in, at the version constraints.txt pins.
    assert re.search(
        r"pip install --no-cache-dir -c constraints\.txt -r requirements\.txt", deps_step
    )
    # Then the project itself, from the working directory the COPY lines filled, built with the
    # pinned setuptools.
    (project_step,) = [run for run in installs if re.search(r"pip install [^&]*\s\.(\s|$)", run)]
    assert "-e" not in shlex.split(project_step), "a real install, not an editable one"
    assert re.search(r"--no-deps --build-constraint constraints\.txt \.", project_step)


def test_entrypoint_is_the_console_script_and_the_default_command_is_real() -> None:
    steps = instructions()
    (entrypoint,) = [exec_form(args) for keyword, args in steps if keyword == "ENTRYPOINT"]
    (cmd,) = [exec_form(args) for keyword, args in steps if keyword == "CMD"]
    scripts = pyproject()["project"]["scripts"]
    assert entrypoint == ["automations"] and "automations" in scripts
    module, _, function = scripts["automations"].partition(":")
    imported = __import__(module, fromlist=[function])
    assert callable(getattr(imported, function))
    assert cmd == ["api"]
    assert_real_commands([cmd])


def test_compose_commands_run_on_this_entrypoint() -> None:
    compose = services()
    ours = {name: service for name, service in compose.items() if built_here(service)}
    assert ours, "compose builds our image from this Dockerfile"
    # The compose command is the CMD: each one follows ENTRYPOINT ["automations"].
    assert_real_commands([service["command"] for service in ours.values()])


def test_the_docs_deploy_with_compose_and_the_same_commands() -> None:
    page = OPERATIONS.read_text()
    assert "docker compose up -d" in page
    assert re.search(r"docker compose up -d --scale worker=\d+", page)
    for name, service in services().items():
        if built_here(service):
            line = " ".join(["automations", *service["command"]])
            assert line in page, f"docs/operations.md does not show `{line}` ({name})"
    # `docker compose run --rm <service> <args>` go after the ENTRYPOINT: real commands too.
    runs = re.findall(r"docker compose run --rm (\w+) ([^`\n]+)", page)
    assert runs, "docs/operations.md shows how to run a one-off command (the first API key)"
    for service, args in runs:
        assert built_here(services()[service])
        words = shlex.split(args)
        assert_real_commands([cli_words(words)])
    assert any(words.startswith("keys create") for _, words in runs)
    assert "AUTOMATIONS_SECRET_KEY" in page and "FLOWER_BASIC_AUTH" in page


# -- what the install step installs ------------------------------------------------------------

BUILD = """
import sys
from setuptools.dist import Distribution
from setuptools.config.pyprojecttoml import apply_configuration

dist = Distribution()
apply_configuration(dist, "pyproject.toml")
dist.script_name = "setup.py"
dist.get_command_obj("egg_info").egg_base = sys.argv[2]
dist.get_command_obj("build_py").build_lib = sys.argv[1]
dist.run_command("build_py")
"""


def test_the_installed_packages_carry_every_file_they_read(tmp_path: Path) -> None:
    """`pip install .` in the image installs no data file that pyproject does not declare."""
    context = tmp_path / "context"
    for source in copied_sources():
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(origin, context / source)
    built, egg = tmp_path / "built", tmp_path / "egg"
    egg.mkdir()
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", BUILD, str(built), str(egg)],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    expected = {
        path.relative_to(context).as_posix()
        for package in packages()
        for path in (context / package).rglob("*")
        if path.is_file() and path.suffix not in (".md", ".pyc")
    }
    installed = {path.relative_to(built).as_posix() for path in built.rglob("*") if path.is_file()}
    missing = sorted(expected - installed)
    assert not missing, (
        "files in the packages that `pip install .` leaves out (declare them in "
        f"[tool.setuptools.package-data] of pyproject.toml): {missing}"
    )

    # The container imports the installed copy, not a checkout: so do it from the built tree.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATIONS_")}
    env["PYTHONPATH"] = str(built)
    probe = (
        "import api.app, cli.main, migrations, tasks.app, web.render; "
        "assert api.app.__file__.startswith(sys.argv[1]), api.app.__file__"
    )
    imported = subprocess.run(
        [sys.executable, "-c", "import sys; " + probe, str(built)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
