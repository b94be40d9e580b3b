"""Bounds on the free JSON the API stores: event payloads, contact properties, step configs.

Every value accepted must come back out of the API unchanged. The serialisers on the way back
refuse values nested about 255 levels deep (pydantic's limit; the json module's is near 1,000),
so the depth limit keeps far below both; the size limit keeps one value from filling a row.
See docs/input-limits.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from engine.errors import InvalidInput
from engine.stored_text import text_problem

DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_BYTES = 64 * 1024
# The highest depth a setting may allow: well under every serialiser's limit.
HIGHEST_MAX_DEPTH = 128


@dataclass(frozen=True)
class JsonLimits:
    """How deep (objects and arrays within each other) and how large (UTF-8 JSON) a value may be."""

    max_depth: int = DEFAULT_MAX_DEPTH
    max_bytes: int = DEFAULT_MAX_BYTES

    def check(self, value: object, *, field: str) -> None:
        """InvalidInput naming the field, the place and the rule, unless the value fits."""
        _check_shape(value, field, self.max_depth)
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
        if size > self.max_bytes:
            raise InvalidInput(
                f"`{field}` is {size} bytes as JSON; at most {self.max_bytes} bytes are accepted",
                field=field,
            )


def _check_shape(value: object, field: str, max_depth: int) -> None:
    """JSON types only, nested at most `max_depth` levels, text that can be stored; no recursion,
    so that a hostile value cannot exhaust the stack."""
    pending: list[tuple[object, str, int]] = [(value, field, 0)]
    while pending:
        node, where, depth = pending.pop()
        if isinstance(node, dict | list):
            if depth + 1 > max_depth:
                raise InvalidInput(
                    f"`{field}` is nested more than {max_depth} levels deep (objects and arrays"
                    f" within each other), at `{_cut(where)}`",
                    field=field,
                )
            if isinstance(node, dict):
                for key, item in node.items():
                    if not isinstance(key, str):
                        raise InvalidInput(
                            f"`{_cut(where)}` has a key that is not text", field=field
                        )
                    _check_text(key, f"{where} key {key[:20]!r}", field)
                    pending.append((item, f"{where}.{key}", depth + 1))
            else:
                pending.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(node))
        elif isinstance(node, str):
            _check_text(node, where, field)
        elif isinstance(node, float) and not math.isfinite(node):
            raise InvalidInput(
                f"`{_cut(where)}` is {node}, which JSON cannot hold: use a finite number or null",
                field=field,
            )
        elif node is not None and not isinstance(node, bool | int | float):
            raise InvalidInput(f"`{_cut(where)}` is not a JSON value", field=field)


def _check_text(text: str, where: str, field: str) -> None:
    problem = text_problem(text)
    if problem is not None:
        raise InvalidInput(f"`{_cut(where)}` {problem}", field=field)


def _cut(where: str) -> str:
    """A path short enough for a message: its start and its end."""
    return where if len(where) <= 80 else f"{where[:38]}…{where[-38:]}"
