"""The store's statements on PostgreSQL, compiled once and executed on the driver's cursor.

`Connection.execute` does, at every execution of a statement it has compiled before: a cache
key looked up (a nested tuple hashed anew), an execution context built, the parameters
constructed and processed, the cursor events, the driver's execute, a result object with its
metadata and fetch strategy, and each row built from them. For a step's statements that was
about a third of a step's Python time (py-spy on `bench.profile_steps`), at a few rows per
statement.

`Direct` keeps, per statement and dialect, what does not change between executions: the SQL
text, the parameter names, the bind processors, the result's keys and (from the first
execution's column types) its result processors. An execution then constructs the parameters
with SQLAlchemy's own compiled form (defaults, fixed values and missing ones as it does), runs
the statement through the connection's `_cursor_execute` (SQLAlchemy's path for statements a
dialect runs on a cursor itself: the cursor events fire, a driver error comes out as
SQLAlchemy's and a lost connection is invalidated on the way; the events see no execution
context, as for those statements), and answers with `Rows`, which offers what the store reads
of a result (`Result`). The connection's `before_execute` and `after_execute` events do not
see these statements, and the cursor events get no context: while anything listens to those
events (a tracer keeps its span on the context), `store.core.execute` takes Core instead
(`store.core.listened`).

Only what this path renders exactly as `Connection.execute` would takes it; everything else
falls back to `Connection.execute` (`prepare` says None):
- one set of parameters (not executemany), no execution options on the statement;
- no parameters SQLAlchemy renders into the text at each execution ("expanding" IN lists,
  literal_execute), no escaped parameter names, no schema translation;
- no Python-side column defaults to compute (an INSERT or UPDATE's prefetch), no implicit
  RETURNING;
- a statement that returns rows names its columns in order (SQLAlchemy matches them to the
  cursor's by position);
- and only on psycopg, the production driver (SQLite, the embedded mode, keeps Core).

tests/integration/test_direct.py runs a run of every step type with each direct execution
checked against `Connection.execute`'s answer (rows, column names, counts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Protocol, cast

from sqlalchemy import ClauseElement, Connection, Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.sql.compiler import SQLCompiler

# Statements kept per (statement, dialect): the store's are module constants, a few dozen.
# A statement built anew per call is compiled here only from its second execution on (it
# would otherwise fill this with entries used once); past CAPACITY the whole map starts over.
CAPACITY = 512

_Processor = Callable[[Any], Any]

# A row of a store statement, its columns also attributes: SQLAlchemy's `Row` or a `_Row`.
Record = Any


class Scalars(Protocol):
    """What the store reads of a result's first column (`Result.scalars()`)."""

    def __iter__(self) -> Iterator[Any]: ...

    def all(self) -> Sequence[Any]: ...

    def first(self) -> Any: ...

    def one(self) -> Any: ...


class Result(Protocol):
    """What the store reads of a statement's result: SQLAlchemy's `CursorResult` or `Rows`."""

    @property
    def rowcount(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def all(self) -> Sequence[Any]: ...

    def first(self) -> Any: ...

    def one(self) -> Any: ...

    def one_or_none(self) -> Any: ...

    def scalar(self) -> Any: ...

    def scalar_one(self) -> Any: ...

    def scalar_one_or_none(self) -> Any: ...

    def scalars(self) -> Scalars: ...


class Rows:
    """A statement's rows, fetched: what the store reads of SQLAlchemy's `CursorResult`."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise _one_error(len(self._rows), "row")
        return self._rows[0]

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise _one_error(len(self._rows), "row")
        return self.first()

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def scalars(self) -> Rows:
        return Rows([row[0] for row in self._rows], self.rowcount)


def _one_error(count: int, what: str) -> Exception:
    if count == 0:
        return NoResultFound(f"No {what} was found when one was required")
    return MultipleResultsFound(f"Multiple {what}s were found when exactly one was required")


class _Row(tuple[Any, ...]):
    """Base of each statement's row class: a tuple whose columns are also attributes, with
    SQLAlchemy's `Row`'s `_fields` and `_mapping`."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))

    def _asdict(self) -> dict[str, Any]:
        return self._mapping

    @classmethod
    def _make(cls, values: Any) -> _Row:
        return tuple.__new__(cls, values)


def _row_class(keys: tuple[str, ...]) -> type[_Row]:
    """A row class for these result keys. A key is an attribute where SQLAlchemy's `Row`
    answers it by name: once in the row, and not a name tuples already have (`count`,
    `index`). A key twice is read by position, as the store reads a claim's joined rows."""
    counted = Counter(keys)
    attributes = {
        key: property(itemgetter(index))
        for index, key in enumerate(keys)
        if counted[key] == 1 and key.isidentifier() and not hasattr(_Row, key)
    }
    return type("Row", (_Row,), {"__slots__": (), "_fields": keys, **attributes})


class Direct:
    """One statement compiled for one dialect, executed on the driver's cursor."""

    __slots__ = ("_compiled", "_processors", "_result", "_row", "_sql", "statement")

    def __init__(
        self, statement: Executable, compiled: SQLCompiler, keys: tuple[str, ...] | None
    ) -> None:
        self.statement = statement
        self._compiled = compiled
        self._sql = compiled.string
        self._processors = cast(dict[str, _Processor], compiled._bind_processors)
        self._row = _row_class(keys) if keys is not None else None
        # The result processors, once the first execution's column types are known; an
        # empty tuple when no column has one (the common case on psycopg).
        self._result: tuple[_Processor | None, ...] | None = None

    def run(self, connection: Connection, params: Mapping[str, Any]) -> Rows:
        compiled = self._compiled
        bound = compiled.construct_params(params, escape_names=False)
        processors = self._processors
        if processors:
            for name, processor in processors.items():
                if name in bound:
                    bound[name] = processor(bound[name])
        cursor = connection.connection.cursor()
        try:
            connection._cursor_execute(cursor, self._sql, bound)  # see the module's doc
            if self._row is None:
                return Rows([], cursor.rowcount)
            fetched = cursor.fetchall()
            if self._result is None:
                self._result = self._result_processors(connection.dialect, cursor.description)
            make = self._row._make
            if self._result:
                rows = [make(_processed(row, self._result)) for row in fetched]
            else:
                rows = [make(row) for row in fetched]
            return Rows(rows, cursor.rowcount)
        finally:
            cursor.close()

    def _result_processors(
        self, dialect: Dialect, description: Any
    ) -> tuple[_Processor | None, ...]:
        """As SQLAlchemy's result metadata makes them: each column's type, for the type the
        driver said the column has."""
        columns = self._compiled._result_columns
        found = tuple(
            column.type._cached_result_processor(dialect, described[1])
            for column, described in zip(columns, description, strict=True)
        )
        return found if any(found) else ()


def _processed(row: tuple[Any, ...], processors: tuple[_Processor | None, ...]) -> list[Any]:
    return [
        value if processor is None else processor(value)
        for value, processor in zip(row, processors, strict=True)
    ]


_kept: dict[tuple[int, int, frozenset[str] | None], tuple[Executable, Dialect, Direct | None]] = {}
_seen: dict[int, Executable] = {}


def prepare(statement: Executable, dialect: Dialect, params: Mapping[str, Any]) -> Direct | None:
    """The statement's direct form for this dialect and these parameters' names, or None when
    it must go through `Connection.execute` (see the module's doc)."""
    if dialect.driver != "psycopg":
        return None
    columns = frozenset(params) if statement.is_dml else None  # what an INSERT's columns are
    key = (id(statement), id(dialect), columns)
    kept = _kept.get(key)
    if kept is not None and kept[0] is statement and kept[1] is dialect:
        return kept[2]
    if _seen.get(id(statement)) is not statement:  # once: built per call, or not yet repeated
        if len(_seen) >= CAPACITY:
            _seen.clear()
        _seen[id(statement)] = statement
        return None
    if len(_kept) >= CAPACITY:
        _kept.clear()
    direct = _compile(statement, dialect, params)
    _kept[key] = (statement, dialect, direct)
    return direct


def _compile(statement: Executable, dialect: Dialect, params: Mapping[str, Any]) -> Direct | None:
    if statement._execution_options:
        return None
    element = cast(ClauseElement, statement)
    compiled = element.compile(dialect=dialect, column_keys=sorted(params))
    if not isinstance(compiled, SQLCompiler) or (
        compiled.positional
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.escaped_bind_names
        or compiled.schema_translate_map
        or compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.implicit_returning
    ):
        return None
    if not compiled._result_columns:
        # No rows to read: a write without RETURNING. Anything else (a textual statement
        # whose columns SQLAlchemy learns from the cursor) keeps Core.
        writes = statement.is_dml and not compiled.returning
        return Direct(statement, compiled, None) if writes else None
    keys = tuple(column.keyname for column in compiled._result_columns)
    if not compiled._ordered_columns:
        return None
    return Direct(statement, compiled, keys)
