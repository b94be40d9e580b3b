"""Whether the hourly rollup still equals a recount of the runs and steps, and its repair.

Every transaction keeps the rollup as it changes runs and steps (store/rollup.py), so the two
never differ unless a bug or a write behind the engine's back made them. An operator checks
this on a live system, and repairs it (`automations db check-rollup [--repair]`); the fault
lab checks it after each run.
"""

from __future__ import annotations

import datetime as dt

from engine.db import snapshot, transaction
from engine.errors import InvalidInput
from engine.runtime import Runtime
from engine.store.rollup_rebuild import Difference, correct, differences

_EPOCH = dt.date(1970, 1, 1)


def check_rollup(rt: Runtime, since: dt.date | None = None) -> list[Difference]:
    """The counters that differ from a recount, read with the recount in one snapshot; from
    the UTC day `since` on, if given (a check of the last days reads only their runs)."""
    since_day = (since - _EPOCH).days if since is not None else 0
    if since_day < 0:
        raise InvalidInput("the day must be 1970-01-01 or later", field="since")
    with snapshot(rt.sessions) as session:
        return differences(session.connection(), since_day)


def repair_rollup(rt: Runtime, since: dt.date | None = None) -> list[Difference]:
    """Find the counters that differ, then add what each lacks; the differences repaired.

    Nothing waits for it: the differences are read in one snapshot, and the corrections are
    added as increments afterwards, which the transactions committed meanwhile do not change.
    """
    found = check_rollup(rt, since)
    if found:
        with transaction(rt.sessions) as session:
            correct(session.connection(), found)
    return found


def describe(difference: Difference) -> str:
    """One line: which row, which counter, kept against recounted."""
    start = dt.datetime.fromtimestamp(difference.hour * 3600, dt.UTC)
    when = f"day {start:%Y-%m-%d}" if difference.span == 24 else f"hour {start:%Y-%m-%d %H}:00"
    key = "".join(f" {part}" for part in difference.key)
    return (
        f"{difference.table} automation {difference.automation_id} {when} UTC{key}: "
        f"{difference.counter} kept {difference.kept}, recounted {difference.recounted}"
    )
