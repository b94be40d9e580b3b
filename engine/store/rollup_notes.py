"""What a transaction noted for the rollup (engine/store/rollup.py), and the rows it adds.

Notes are counters by run (or by rollup key, for a bulk cancel), summed into rows of the three
rollup tables, each row once for its hour (span 1) and once for its UTC day (span 24), in key
order: the order in which every writer locks them.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table

from engine import json_text
from engine.store.rollup_upserts import columns, rows_name
from models.rollups import DurationRollup, RunRollup, StepRollup

# Rows per (automation, hour): concurrent transactions pick one at random, so that writers
# finishing steps of one busy automation rarely wait for each other's commit; readers sum them.
SHARDS = 4
# Its own generator: the shard pick must not draw from (or disturb) the process's global one.
_PICK_SHARD = random.Random()

RUN_ROLLUPS: Table = RunRollup.__table__  # type: ignore[assignment]
STEP_ROLLUPS: Table = StepRollup.__table__  # type: ignore[assignment]
DURATION_ROLLUPS: Table = DurationRollup.__table__  # type: ignore[assignment]

# The rows to add to each table, tables in their lock order.
Written = list[tuple[Table, list[dict[str, Any]]]]


@dataclass
class Notes:
    """Changes noted in one transaction (or savepoint), by run, not yet written."""

    # (run id, hour or None for the run's own hour, column) -> delta
    runs: Counter[tuple[uuid.UUID, int | None, str]] = field(default_factory=Counter)
    # (run id, step key, step type, column) -> delta
    steps: Counter[tuple[uuid.UUID, str, str, str]] = field(default_factory=Counter)
    # (run id, bucket) -> delta
    durations: Counter[tuple[uuid.UUID, int]] = field(default_factory=Counter)
    # The same by rollup key, for runs cancelled in bulk (`note_runs_cancelled`): a few
    # counters for a cancel of a million runs, not three per run.
    # (automation id, hour, column) -> delta
    keyed_runs: Counter[tuple[uuid.UUID, int, str]] = field(default_factory=Counter)
    # (automation id, hour created, step key, step type, column) -> delta
    keyed_steps: Counter[tuple[uuid.UUID, int, str, str, str]] = field(default_factory=Counter)
    # run id -> (automation id, hour created), for the runs this transaction already knows
    known: dict[uuid.UUID, tuple[uuid.UUID, int]] = field(default_factory=dict)
    # run id -> when it started, for the runs this transaction holds locked (read under lock)
    started: dict[uuid.UUID, dt.datetime] = field(default_factory=dict)

    def counts_nothing(self) -> bool:
        """No counter to write (what the transaction knows of its runs aside)."""
        return not (
            self.runs or self.steps or self.durations or self.keyed_runs or self.keyed_steps
        )

    def merge(self, other: Notes) -> None:
        # Most of a step's notes are two or three counters: skip the empty ones.
        if other.runs:
            self.runs.update(other.runs)
        if other.steps:
            self.steps.update(other.steps)
        if other.durations:
            self.durations.update(other.durations)
        if other.keyed_runs:
            self.keyed_runs.update(other.keyed_runs)
        if other.keyed_steps:
            self.keyed_steps.update(other.keyed_steps)
        self.known.update(other.known)
        self.started.update(other.started)


def merge_layers(layers: Collection[Notes], extra: Notes | None = None) -> Notes:
    """The layers' notes (and `extra`), for reading: the one layer itself if it is alone (a
    transaction without savepoints), else new notes; the layers are left as they were."""
    if extra is None and len(layers) == 1:
        return next(iter(layers))
    merged = Notes()
    for notes in layers:
        merged.merge(notes)
    if extra is not None:
        merged.merge(extra)
    return merged


def rows_to_write(notes: Notes, keys: Mapping[uuid.UUID, tuple[uuid.UUID, int]]) -> Written:
    """The rows to add to each rollup table (tables in their lock order), rows in key order."""
    shard = _PICK_SHARD.randrange(SHARDS)
    # Summed by rollup key first: the runs of one ingestion (a hundred notes each) mostly share
    # one automation and hour, and each key is then spread over its hour and day once.
    by_run: Counter[tuple[Any, ...]] = Counter()
    for (run_id, hour, column), delta in notes.runs.items():
        owner, created = keys[run_id]
        by_run[owner, created if hour is None else hour, (shard,), column] += delta
    by_step: Counter[tuple[Any, ...]] = Counter()
    for (run_id, step_key, step_type, column), delta in notes.steps.items():
        owner, created = keys[run_id]
        by_step[owner, created, (step_key, step_type, shard), column] += delta
    for (owner, hour, column), delta in notes.keyed_runs.items():
        by_run[owner, hour, (shard,), column] += delta
    for (owner, created, step_key, step_type, column), delta in notes.keyed_steps.items():
        by_step[owner, created, (step_key, step_type, shard), column] += delta
    by_duration: Counter[tuple[Any, ...]] = Counter()
    for (run_id, bucket), delta in notes.durations.items():
        owner, created = keys[run_id]
        # Unsharded: runs ending in the same hour mostly land in different buckets, and a
        # long window reads every (hour, bucket) row.
        by_duration[owner, created, (bucket, 0), "runs"] += delta
    runs, steps, durations = _spread(by_run), _spread(by_step), _spread(by_duration)
    return [
        (table, rows)
        for table, deltas in (
            (RUN_ROLLUPS, runs),
            (STEP_ROLLUPS, steps),
            (DURATION_ROLLUPS, durations),
        )
        if (rows := _rows(table, deltas))
    ]


def json_params(written: Written) -> dict[str, str]:
    return {rows_name(table): json_text.dumps(rows, str) for table, rows in written}


def _spread(summed: Counter[tuple[Any, ...]]) -> _Deltas:
    deltas: _Deltas = {}
    for (owner, hour, rest, column), delta in summed.items():
        _add(deltas, owner, hour, rest, column, delta)
    return deltas


def _add(
    deltas: _Deltas,
    owner: uuid.UUID,
    hour: int,
    rest: tuple[Any, ...],
    column: str,
    delta: int,
) -> None:
    """The delta in the hour's row (span 1) and in its UTC day's row (span 24)."""
    for key in ((owner, 1, hour, *rest), (owner, 24, hour - hour % 24, *rest)):
        counts = deltas.get(key)
        if counts is None:
            deltas[key] = {column: delta}
        else:
            counts[column] = counts.get(column, 0) + delta


# Rollup row key -> column -> delta.
_Deltas = dict[tuple[Any, ...], dict[str, int]]


def noted_runs(notes: Notes) -> set[uuid.UUID]:
    wanted = {key[0] for key in notes.runs} | {key[0] for key in notes.steps}
    return wanted | {key[0] for key in notes.durations}


def _rows(table: Table, deltas: _Deltas) -> list[dict[str, Any]]:
    """The table's rows to add, in key order, those whose deltas all cancel out left out."""
    keys, counters = columns(table)
    return [
        {**dict(zip(keys, key, strict=True)), **{name: counts.get(name, 0) for name in counters}}
        for key, counts in sorted(deltas.items(), key=lambda item: str(item[0]))
        if any(counts.values())
    ]
