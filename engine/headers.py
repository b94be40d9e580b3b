"""What may go into an email header: text on one line, with no control character.

A CR or LF in a header value would end the header and start another one (`Bcc: ...`), so
every value bound for a header (subject, from, reply-to, to) is checked for them at the door
and again before anything is written or sent. So is an RFC 2047 encoded word: the email
library decodes `=?utf-8?q?=0D=0ABcc:...?=` in a value it is given and writes the line break
it holds, or the comma and address, out as they are. See docs/input-limits.md.
"""

from __future__ import annotations

import re

from engine.errors import InvalidInput

# C0 and C1 controls (NUL, TAB, CR, LF, NEL...), DEL, and Unicode's line and paragraph
# separators, which some mail software also takes for line breaks.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# The start of what Python's header parser takes for an encoded word, even inside a word or
# quotes, with spaces in it, or without its closing `?=` (`=?utf-8?q?=0A` is a line feed).
ENCODED_WORD = re.compile(r"=\?[^?]*\?[bq]\?", re.IGNORECASE)
INVALID_HEADER_VALUE = "invalid_header_value"

_NAMES = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\t": "a tab", "\x00": "a NUL"}


def control_character(text: str) -> str | None:
    """The first control character in the text, described for a person; None when clean."""
    found = CONTROL.search(text)
    if found is None:
        return None
    char = found.group()
    return _NAMES.get(char, f"the control character U+{ord(char):04X}")


def header_problem(text: str) -> str | None:
    """What keeps the text out of a header, described for a person; None when it may go in."""
    problem = control_character(text)
    if problem is not None:
        return problem
    found = ENCODED_WORD.search(text)
    if found is None:
        return None
    word = text[found.start() : found.start() + 40]
    return f"an RFC 2047 encoded word ({word!r}), which mail software decodes into other text"


def check_header_text(value: str, field: str, *, label: str | None = None) -> str:
    """The value, or InvalidInput when it holds a line break, another control character or an
    encoded word."""
    problem = header_problem(value)
    if problem is not None:
        raise InvalidInput(
            f"`{label or field}` goes into an email header and holds {problem}: "
            "a header value is one line without control characters",
            field=field,
        )
    return value
