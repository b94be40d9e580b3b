"""The docs stay true: links resolve, the commands they show exist, the README stays short."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from cli.main import app
from tests.markdown import (
    ROOT,
    anchors,
    code_blocks,
    documents,
    inline_code,
    links,
)

README_MAX_BYTES = 12 * 1024
# `automations <command> [<subcommand>]` and what follows on the line, up to a pipe or the like.
COMMAND = re.compile(r"(?<![\w/.:-])automations\s+(?P<rest>[^|;&)#`\n]*)")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def cli() -> Any:
    """The `automations` command as click sees it: groups have `commands`, commands `params`."""
    return typer.main.get_command(app)


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The command the words name, and the words it has not used; fails on an unknown one."""
    command, used = cli(), []
    for word in words:
        subcommands = getattr(command, "commands", None)
        if subcommands is None or word.startswith("-"):
            break
        assert word in subcommands, f"`automations {' '.join([*used, word])}` is not a command"
        command, used = subcommands[word], [*used, word]
    rest = words[len(used) :]
    if hasattr(command, "commands") and used and "--help" not in rest:
        raise AssertionError(f"`automations {' '.join(used)}` needs a subcommand")
    return command, rest


def options(command: Any) -> set[str]:
    return {"--help"} | {name for param in command.params for name in param.opts}


def mentions(text: str) -> list[str]:
    """`automations ...` as code blocks and code spans show it."""
    sources = [block.body for block in code_blocks(text)] + inline_code(text)
    return [match.group(0) for source in sources for match in COMMAND.finditer(source)]


@pytest.mark.parametrize("document", documents(), ids=relative)
def test_every_relative_link_resolves(document: Path) -> None:
    text = document.read_text()
    for target in links(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        where = f"{relative(document)}: ({target})"
        assert linked.exists(), f"{where}: no such file"
        assert linked.is_relative_to(ROOT), f"{where}: outside the repository"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked.read_text()), f"{where}: no such heading"


@pytest.mark.parametrize("document", documents(), ids=relative)
def test_every_command_shown_exists_with_its_options(document: Path) -> None:
    for mention in mentions(document.read_text()):
        words = mention.split()[1:]
        command, rest = resolve(words)
        known = options(command)
        for option in OPTION.findall(" ".join(rest)):
            assert option in known, f"{relative(document)}: `{mention.strip()}`: no {option}"


def test_the_check_catches_a_command_that_is_gone() -> None:
    with pytest.raises(AssertionError, match="is not a command"):
        resolve(["domains", "create", "example.com"])
    command, rest = resolve(["runs", "list", "ID", "--status", "failed"])
    assert command.name == "list" and "--status" in options(command) and rest[0] == "ID"


def test_the_docs_mention_commands_at_all() -> None:
    shown = {" ".join(m.split()[1:3]) for d in documents() for m in mentions(d.read_text())}
    assert {"dev", "domains verify", "apply examples/welcome.yaml"} <= shown


def test_the_readme_stays_short_and_links_every_page() -> None:
    readme = ROOT / "README.md"
    assert len(readme.read_bytes()) <= README_MAX_BYTES, "move depth to docs/"
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(readme.read_text())}
    for page in documents()[1:]:
        assert page.resolve() in linked, f"README.md does not link {relative(page)}"


def test_the_configuration_page_lists_every_setting() -> None:
    """The README sends readers there for every AUTOMATIONS_* setting; each row is its name."""
    from engine.settings import Settings

    page = (ROOT / "docs" / "configuration.md").read_text()
    rows = set(re.findall(r"^\| `(AUTOMATIONS_[A-Z_]+)` \|", page, flags=re.MULTILINE))
    missing = {f"AUTOMATIONS_{name.upper()}" for name in Settings.model_fields} - rows
    assert not missing, f"docs/configuration.md has no row for {sorted(missing)}"
