"""constraints.txt pins every dependency, direct and transitive, and every install path uses it."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "constraints.txt"
PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;#]+)")


def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.fullmatch(line.strip())
        assert match, f"constraints.txt: {line!r} is not `name==version`"
        name = canonicalize_name(match["name"])
        assert name not in found, f"constraints.txt pins {name} twice"
        found[name] = Version(match["version"])
    return found


def declared(extras: tuple[str, ...] | None = None) -> list[Requirement]:
    """pyproject.toml's dependencies and those of its extras (every one by default)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if extras is None or name in extras:
            lines += extra
    return [Requirement(line) for line in lines]


def test_every_line_is_an_exact_pin() -> None:
    found = pins()
    assert "pip" in found, "pip itself is pinned: make venv and the image install it first"
    assert "automations" not in found, "the project is not its own dependency"


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    found = pins()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in found, f"{name} is in pyproject.toml but not pinned: run `make lock`"
        assert requirement.specifier.contains(found[name], prereleases=True), (
            f"{name}=={found[name]} is outside pyproject.toml's {requirement}: run `make lock`"
        )


def _closure() -> set[str]:
    """The distributions the project and its dev extra pull in, as installed in this venv."""
    seen: set[tuple[str, str]] = set()
    todo = [(requirement, "") for requirement in declared(extras=("dev",))]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        for wanted in [(name, ""), *((name, e) for e in requirement.extras)]:
            if wanted in seen:
                continue
            seen.add(wanted)
            todo += [(Requirement(line), wanted[1]) for line in metadata.requires(name) or []]
    return {name for name, _ in seen}


def test_every_transitive_dependency_is_pinned_and_installed_at_its_pin() -> None:
    found = pins()
    for name in sorted(_closure()):
        assert name in found, f"{name} is installed as a dependency but not pinned: `make lock`"
        installed = Version(metadata.version(name))
        assert installed == found[name], (
            f"{name} {installed} is installed, constraints.txt pins {found[name]}: `make venv`"
        )


def test_the_venv_ci_and_image_install_through_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK := constraints\.txt$", makefile, re.M)
    install = re.search(r"pip install -c \$\(LOCK\) .*-e '\.\[dev\]'", makefile)
    assert install, "make venv installs the project and its dev extra through the lock"
    assert re.search(r"^\$\(STAMP\): .*\$\(LOCK\)", makefile, re.M), "a new lock reinstalls"
    assert re.search(r"^lock:", makefile, re.M), "`make lock` refreshes it"
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r'^make venv VENV="\$VENV"$', ci, re.M)
    assert not re.search(r"pip install (?!.*-c )", ci), "CI installs nothing around the lock"
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install [^\n&]*", dockerfile)
    assert installs and all("constraints.txt" in line for line in installs), installs
