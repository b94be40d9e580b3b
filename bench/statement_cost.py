"""What SQLAlchemy's execution path adds to one of a step's statements.

    python -m bench.statement_cost [--rounds 3000] [--repeat 3] [--database-url URL]

A step's Python CPU is mostly in its statements: in a py-spy profile of `bench.profile_steps`,
59% of it is inside `engine/store/core.execute`, of which psycopg's own work is about a third.
This times the step's claim (`claims._CLAIM_WITH_CONTEXT`, its widest statement) both ways on
one connection, in one transaction that is rolled back, for a run that does not exist (the
statement finds no row, so only its execution is timed):

- core: `Connection.execute` as the store runs it (cache lookup, parameters, execution
  context, result);
- direct: the store's own path on PostgreSQL (engine/store/direct.py: compiled once, the
  parameters constructed and processed, the cursor's execute through SQLAlchemy's events and
  error handling, the rows made with their keys);
- driver: the SQL text and parameters SQLAlchemy sent, built once, then per execution only
  the parameters' processing (`construct_params` and the bind processors) and psycopg's
  cursor: the floor of a leaner execution path that still converts the parameters.

Prints µs of CPU per statement for each. The database needs the schema (any bench's database).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import event

from engine.db import create_db_engine
from engine.store import direct as store_direct
from engine.store.claims import _CLAIM_WITH_CONTEXT

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1/bench_ingest"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--rounds", type=int, default=3000, help="executions per turn")
    parser.add_argument("--repeat", type=int, default=3, help="turns of each way")
    args = parser.parse_args(argv)
    db_engine = create_db_engine(args.database_url)
    now = dt.datetime.now(dt.UTC)
    params = {"rid": uuid.uuid4(), "key": "start", "now": now, "lease_until": now}
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(_c: object, _cur: object, statement: str, parameters: Any, *_: object) -> None:
        sent.append((statement, dict(parameters)))

    try:
        with db_engine.connect() as conn:
            event.listen(db_engine, "before_cursor_execute", record)
            conn.execute(_CLAIM_WITH_CONTEXT, params).first()
            event.remove(db_engine, "before_cursor_execute", record)
            sql, final = sent[0]
            compiled = _CLAIM_WITH_CONTEXT.compile(dialect=db_engine.dialect)
            processors = cast(dict[str, Callable[[Any], Any]], compiled._bind_processors)
            driver = conn.connection.driver_connection
            assert driver is not None

            def core() -> object:
                return conn.execute(_CLAIM_WITH_CONTEXT, params).first()

            def direct() -> object:
                bound = compiled.construct_params(params)
                # Processed as SQLAlchemy does; `final` is the same, expanded as it sent it.
                processed = {
                    k: processors[k](v) if k in processors else v for k, v in bound.items()
                }
                assert processed.keys() <= final.keys() | bound.keys()
                with driver.cursor() as cursor:
                    cursor.execute(sql, final, prepare=True)
                    return cursor.fetchone()

            found = None
            while found is None:  # a statement is taken from its second execution on
                found = store_direct.prepare(_CLAIM_WITH_CONTEXT, db_engine.dialect, params)
            prepared = found

            def engine_path() -> object:
                return prepared.run(conn, params).first()

            ways: dict[str, Callable[[], object]] = {
                "core": core,
                "direct": engine_path,
                "driver": direct,
            }
            for _ in range(args.repeat):
                for name, way in ways.items():
                    started = time.process_time()
                    for _ in range(args.rounds):
                        way()
                    spent = (time.process_time() - started) * 1e6 / args.rounds
                    print(f"{name:7} {spent:6.0f} µs of CPU per statement")
            conn.rollback()
    finally:
        db_engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
