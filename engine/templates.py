"""Render email templates in Resend's logic-less {{{NAME|fallback}}} syntax."""

import html as html_lib
import json
import re
from collections.abc import Mapping
from typing import Any

from engine.errors import StepFailure

# A regex substitution is the whole engine: nothing in a template can run code or reach
# an attribute, so a template is sandboxed by construction.
# No two parts of the pattern may match the same characters: `\s*([^{}]*?)\s*` around the
# fallback made an unclosed `{{{A|` followed by spaces take cubic time (8,000 spaces: 2 minutes).
# The fallback is stripped by the code instead.
_PLACEHOLDER = re.compile(r"\{\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\|([^{}]*))?\}\}\}")
# Filled in by the send itself (the contact's signed link): no step or template may set it.
UNSUBSCRIBE_VARIABLE = "RESEND_UNSUBSCRIBE_URL"
# What one rendered text may hold. Each placeholder may bring a whole payload's 64 KB (five
# times that once escaped), so a template of a few hundred KB could render gigabytes.
MAX_RENDERED = 5_000_000


class MissingVariable(StepFailure):
    """A template placeholder has neither a value nor a fallback."""

    code = "missing_variable"

    def __init__(self, name: str) -> None:
        super().__init__(f"Template variable `{name}` has no value and no fallback")
        self.name = name


class RenderedTooLarge(StepFailure):
    """A template's text would render past MAX_RENDERED characters."""

    code = "rendered_too_large"

    def __init__(self, part: str) -> None:
        super().__init__(
            f"The email's {part} would render to more than {MAX_RENDERED:,} characters; nothing"
            " was sent. Put fewer or shorter values into its placeholders"
        )


def placeholder_names(text: str) -> set[str]:
    """The names of every placeholder in the text."""
    return {match.group(1) for match in _PLACEHOLDER.finditer(text)}


def names_without_fallback(text: str) -> set[str]:
    """The names of the placeholders in the text that have no inline fallback."""
    return {match.group(1) for match in _PLACEHOLDER.finditer(text) if match.group(2) is None}


def format_value(value: Any) -> str:
    """A variable's value as template text (before any escaping)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        # JSON has one number type: 5.0 from a payload is the number 5, and reads "5", as it
        # does in Resend (JavaScript) and from any producer that wrote it `5`.
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


def render(text: str, variables: Mapping[str, Any], *, html: bool, part: str = "text") -> str:
    """Substitute every placeholder, HTML-escaping values when html is True; RenderedTooLarge
    (naming the `part`) as soon as the result would pass MAX_RENDERED characters."""
    size = len(text)

    def substitute(match: re.Match[str]) -> str:
        nonlocal size
        name, fallback = match.group(1), match.group(2)
        # A null value (a contact without a first name) takes the inline fallback, as a
        # template's declared fallback_value does; without one it renders empty.
        if variables.get(name) is not None:
            value = format_value(variables[name])
        elif fallback is not None:
            value = fallback.strip()
        elif name in variables:
            value = ""
        else:
            raise MissingVariable(name)
        out = html_lib.escape(value, quote=True) if html else value
        size += len(out) - len(match.group())
        if size > MAX_RENDERED:
            raise RenderedTooLarge(part)
        return out

    return _PLACEHOLDER.sub(substitute, text)
