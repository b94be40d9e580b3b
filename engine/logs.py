"""Logging: plain or JSON lines, with the run id and step key of the step being executed."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
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
            line["exception"] = self.formatException(record.exc_info)
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
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
