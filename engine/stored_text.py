"""Text the database can store: PostgreSQL holds no NUL character in text or JSON, and a lone
surrogate (\\ud800-\\udfff) has no UTF-8. SQLite would take both, so the rule is checked before
either database sees the value: the same 422, naming the field, on both."""

from __future__ import annotations

from engine.errors import InvalidInput


def text_problem(text: str) -> str | None:
    """What keeps the text from being stored, said after the field's name; None if nothing."""
    if "\x00" in text:
        return "holds a NUL character, which cannot be stored"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "holds a lone surrogate (\\ud800-\\udfff), which is not valid text"
    return None


def check_text(value: object, field: str) -> None:
    """InvalidInput naming `field` if `value` is a string the database cannot store."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise InvalidInput(f"`{field}` {problem}", field=field)
