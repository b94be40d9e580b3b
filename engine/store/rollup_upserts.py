"""The rollup's upserts (engine/store/rollup.py): one per table, built once.

`INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`, its rows in key order. On PostgreSQL a
table's rows come as one JSON array, and the upserts of several tables are data-modifying CTEs
read one after the other (UNION ALL runs its branches in order, and a CTE runs to completion
when first read): the tables are locked in the order given, as by one statement each.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    CTE,
    Executable,
    Insert,
    String,
    Table,
    TextClause,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import ReturningInsert


@cache
def columns(table: Table) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The table's key columns and its counters, by name."""
    keys = tuple(column.name for column in table.primary_key.columns)
    return keys, tuple(column.name for column in table.columns if column.name not in keys)


@cache
def upsert_statement(dialect: str, table: Table) -> Insert:
    """INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n, built once; rows as parameters."""
    keys, counters = columns(table)
    stmt = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    upsert: Insert = stmt.on_conflict_do_update(
        index_elements=keys, set_={name: table.c[name] + stmt.excluded[name] for name in counters}
    )
    return upsert


def rows_name(table: Table) -> str:
    return f"{table.name}_rows"


@cache
def upsert_all(tables: tuple[Table, ...]) -> Executable:
    """PostgreSQL: the upserts of these tables as one statement, built once per set of tables.

    Each table's rows come as one JSON array, read in order: the rows are written in key
    order. With more than one table, each upsert is a data-modifying CTE, and the main query
    counts their rows one after the other (UNION ALL runs its branches in order, and a CTE
    runs to completion when first read): the tables are locked in the order given, as they
    would be by one statement each.
    """
    if len(tables) == 1:
        return _upsert_from_json(tables[0])
    return _in_order(tuple(_counted_upsert(table) for table in tables))


@cache
def upsert_all_after(first: tuple[CTE, ...], tables: tuple[Table, ...]) -> Executable:
    """The CTEs of `first` (data-modifying, each returning a row per row it changed) in their
    order, then the upserts of these tables (`take_with_run_end`'s, or `take_for_statement`'s
    one) in theirs: one count per CTE, in that order."""
    return _in_order((*first, *(_counted_upsert(table) for table in tables)))


def _counted_upsert(table: Table) -> CTE:
    return _counted(table).cte(f"{table.name}_written")


def _counted(table: Table, only_if: TextClause | None = None) -> ReturningInsert[Any]:
    """The upsert of the table's rows, returning a row per row written."""
    return _upsert_from_json(table, only_if).returning(literal_column("1"))


def _in_order(ctes: tuple[CTE, ...]) -> Executable:
    """The rows each CTE returned, counted one CTE after the other (UNION ALL runs its branches
    in order, and a CTE runs to completion when first read)."""
    return union_all(*(select(func.count()).select_from(cte) for cte in ctes))


def _upsert_from_json(table: Table, only_if: TextClause | None = None) -> Insert:
    keys, counters = columns(table)
    names = keys + counters
    # The rows as records of the table's own row type: no column list to keep in step.
    rows = func.json_populate_recordset(
        literal_column(f"NULL::{table.name}"),
        cast(bindparam(rows_name(table), type_=String()), postgresql.JSON),
    ).table_valued(*names)
    chosen = select(*(rows.c[name] for name in names))
    if only_if is not None:
        chosen = chosen.where(only_if)
    stmt = postgresql.insert(table).from_select(names, chosen)
    upsert: Insert = stmt.on_conflict_do_update(
        index_elements=keys, set_={name: table.c[name] + stmt.excluded[name] for name in counters}
    )
    return upsert


@cache
def upsert_cte(table: Table) -> CTE:
    """The upsert of `take_for_statement`'s rows, as a CTE to add to that statement."""
    return _upsert_from_json(table).cte(f"{table.name}_written")


@cache
def conditional_upserts(
    tables: tuple[Table, ...], dialect: Dialect, condition: str
) -> tuple[tuple[str, str], ...]:
    """(name, SQL) of a data-modifying CTE per table that upserts an `offer`'s rows if the SQL
    `condition` holds (bound parameters written `:name`), returning a row per row written; the
    caller reads them in this order (as `_in_order` does), so that the tables are locked in it.
    """
    only_if = text(condition)
    return tuple(
        (f"{table.name}_written", str(_counted(table, only_if).compile(dialect=dialect)))
        for table in tables
    )
