"""The plain-text version of an email's HTML, for a template that has no text of its own."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Elements whose content is no text a reader sees.
_HIDDEN = frozenset({"head", "script", "style", "template", "title", "noscript"})
# Elements that start a new line of text.
_BREAKS = frozenset(
    {"br", "div", "li", "tr", "ul", "ol", "table", "section", "article", "header", "footer", "hr"}
)
# Elements that end their line too, and cells, which are set apart by a space.
_CONTAINERS = frozenset({"div", "ul", "ol", "table", "section", "article", "header", "footer"})
_CELLS = frozenset({"td", "th"})
# Paragraphs and headings stand between empty lines.
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"})
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BREAKS:
            self.parts.append("\n")
        elif tag in _PARAGRAPHS:
            self.parts.append("\n\n")
        elif tag in _CELLS:
            self.parts.append(" ")
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self.parts)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _PARAGRAPHS:
            self.parts.append("\n\n")
        elif tag in _CONTAINERS:
            self.parts.append("\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self.parts[start:]).strip()
            # A reader of the text sees where a link goes, unless its label already says.
            if href and href.startswith(("http://", "https://", "mailto:")) and href != label:
                self.parts.append(f" ({href.removeprefix('mailto:')})")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data.replace("\n", " "))


def html_to_text(html: str) -> str:
    """Readable text of the HTML: no markup, a line per block, each link's address shown."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(collector.parts).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
