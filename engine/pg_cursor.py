"""A psycopg cursor whose `description` is built when read, not at every execution.

psycopg builds `cursor.description` anew each time it is read: one `Column` per result column,
each decoding its name and looking its type up (about 5 µs a column here). SQLAlchemy reads it
after every statement, but for a statement whose result columns it compiled (every statement
the store runs) it only asks whether it is None: the columns themselves go unread. A step's
claim returns 20 columns, so that was about a tenth of its Python time.

`LazyDescriptionCursor.description` answers None or not at once, as psycopg does, and builds the
columns on first use from the result it was taken from, so a description read after the cursor
moved on still describes its own result. Until its columns are built, a description holds that
result (rows included) in memory: SQLAlchemy keeps none beyond the result it read it for.
tests/integration/test_pg_cursor.py compares it with psycopg's own for every kind of result,
which also catches an upgrade that changes `Column`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import psycopg
from psycopg import pq

_ROWS = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.SINGLE_TUPLE, pq.ExecStatus.TUPLES_CHUNK)


class _ResultOf:
    """What `psycopg.Column` reads of a cursor, kept for one result."""

    __slots__ = ("_encoding", "adapters", "pgresult")

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self.pgresult = cursor.pgresult
        self._encoding = cursor._encoding
        self.adapters = cursor.adapters


class _Columns(Sequence[psycopg.Column]):
    __slots__ = ("_built", "_count", "_result")

    def __init__(self, cursor: psycopg.Cursor[Any], count: int) -> None:
        self._result: _ResultOf | None = _ResultOf(cursor)
        self._count = count
        self._built: list[psycopg.Column] | None = None

    def _columns(self) -> list[psycopg.Column]:
        if self._built is None:
            result: Any = self._result
            self._built = [psycopg.Column(result, index) for index in range(self._count)]
            self._result = None  # the result and its rows are not held past this
        return self._built

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> psycopg.Column: ...

    @overload
    def __getitem__(self, index: slice) -> list[psycopg.Column]: ...

    def __getitem__(self, index: int | slice) -> psycopg.Column | list[psycopg.Column]:
        return self._columns()[index]

    def __iter__(self) -> Iterator[psycopg.Column]:
        return iter(self._columns())

    def __repr__(self) -> str:
        return repr(self._columns())


class LazyDescriptionCursor(psycopg.Cursor[Any]):
    @property
    def description(self) -> list[psycopg.Column] | None:
        result = self.pgresult
        # As psycopg: a result with columns, or one that said it has rows ("SELECT ;").
        if result and (result.nfields or result.status in _ROWS):
            return _Columns(self, result.nfields)  # type: ignore[return-value]
        return None
