"""Logging: plain or JSON lines, with the run id and step key of the step being executed."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import re
from collections.abc import Iterator

from engine import json_text

_step: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("step", default=None)
_FIELDS = ("run_id", "step_key", "step_type", "attempt")
# Inside a simulation: its steps are not the runtime's, so their routine lines are not logged.
_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("quiet", default=False)


@contextlib.contextmanager
def step_context(**fields: str) -> Iterator[None]:
    """Every log line inside carries these fields (run_id, step_key, ...)."""
    token = _step.set({k: str(v) for k, v in fields.items()})
    try:
        yield
    finally:
        _step.reset(token)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Below WARNING, nothing logged inside reaches the runtime's log (see StepContextFilter)."""
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


class StepContextFilter(logging.Filter):
    """Copies the current step's ids onto each record, unless the call gave its own; drops
    routine records logged inside `quiet()`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _quiet.get() and record.levelno < logging.WARNING:
            return False
        for key, value in (_step.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# An email address in free text, its `@` as is or URL-encoded (a request's path): a local part,
# then a domain with at least one dot and a top-level label of letters. Not a bare `name@host`
# (Celery's node names).
_ADDRESS = re.compile(
    r"[^\s@<>()\[\]\"',;:/?#=&]+(?:@|%40)(?:[^\s@<>()\[\]\"',;:/?#=&%.]+\.)+[^\W\d_]{2,}(?![\w-])"
)
HIDDEN_ADDRESS = "***"
# The loggers whose lines may quote a contact's address (a step's error, an SMTP server's
# reply, a request's path); others' lines are left as they are.
_OWN_LOGGERS = ("engine", "tasks", "api", "cli", "wiring", "uvicorn")


def hide_addresses(text: str) -> str:
    """`text` with every email address in it replaced by `***`."""
    return _ADDRESS.sub(HIDDEN_ADDRESS, text) if "@" in text or "%40" in text else text


class HideAddresses(logging.Filter):
    """Takes contacts' addresses out of our lines and their tracebacks: the log says which run
    and step, the run's record (the API, the dashboard) says whom. The step's error keeps the
    address where the operator reads it; the log, kept and shipped elsewhere, does not."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.partition(".")[0] not in _OWN_LOGGERS:
            return True
        message = record.getMessage()
        hidden = hide_addresses(message)
        if hidden != message:
            record.msg, record.args = hidden, None
        if record.exc_info and not record.exc_text:
            record.exc_text = hide_addresses(_TRACEBACKS.formatException(record.exc_info))
        return True


_TRACEBACKS = logging.Formatter()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _FIELDS:
            if hasattr(record, key):
                line[key] = getattr(record, key)
        if record.exc_info:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json_text.dumps(line, str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ids = " ".join(f"{k}={getattr(record, k)}" for k in _FIELDS if hasattr(record, k))
        return f"{base} [{ids}]" if ids else base


def configure_logging(*, json_lines: bool = False, level: str = "INFO") -> None:
    """Send the runtime's logs to stderr, as JSON lines or as text with step ids appended."""
    handler = logging.StreamHandler()
    handler.addFilter(StepContextFilter())
    handler.addFilter(HideAddresses())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
