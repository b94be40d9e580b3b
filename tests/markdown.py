"""The repository's Markdown as the docs tests read it: sections, code blocks, links, anchors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```\s*$", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(?P<title>.+?)\s*#*\s*$", re.M)
INLINE_CODE = re.compile(r"`(?P<code>[^`\n]+)`")


def documents() -> list[Path]:
    """README.md, every page under docs/, and cli/README.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "cli" / "README.md"]


@dataclass(frozen=True)
class Block:
    lang: str
    body: str


def code_blocks(text: str) -> list[Block]:
    """The fenced code blocks, in order."""
    return [Block(m["lang"], m["body"]) for m in FENCE.finditer(text)]


def without_code(text: str) -> str:
    """The text with its fenced blocks blanked, so that `# comment` is not read as a heading."""
    return FENCE.sub("", text)


def inline_code(text: str) -> list[str]:
    """The `code spans` of the prose (fenced blocks left out)."""
    return [m["code"] for m in INLINE_CODE.finditer(without_code(text))]


def section(text: str, title: str) -> str:
    """The body of the `## title` section, up to the next heading of level 1 or 2."""
    body: list[str] = []
    inside = fenced = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,2} ", line):
            if inside:
                break
            inside = line.strip() == f"## {title}"
            continue
        if inside:
            body.append(line)
    assert body, f"no `## {title}` section"
    return "".join(body)


def links(text: str) -> list[str]:
    """Every link and image target of the prose (fenced blocks left out)."""
    return [m["target"] for m in LINK.finditer(without_code(text))]


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (underscores kept, as
    GitHub keeps them), spaces to dashes."""
    plain = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", title).strip().lower()
    return re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of every heading, with GitHub's -1, -2 suffixes for repeated ones."""
    found: set[str] = set()
    for match in HEADING.finditer(without_code(text)):
        base = slug(match["title"])
        name, count = base, 0
        while name in found:
            count += 1
            name = f"{base}-{count}"
        found.add(name)
    return found
