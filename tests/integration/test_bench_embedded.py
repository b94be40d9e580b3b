"""bench.embedded's side of its own: the executor of `automations dev` in a process of its own,
timed from its start to the last run's end (the bench is not run by the suite, this part is)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.embedded import measure_embedded
from bench.throughput import STEPS_PER_RUN, smtp_sink


def test_the_embedded_side_times_every_run_to_its_end_and_sends_each_email_once(
    tmp_path: Path,
) -> None:
    args = argparse.Namespace(runs=3, database_url=f"sqlite:///{tmp_path / 'bench.db'}")
    with smtp_sink() as (sink, smtp):
        figures = measure_embedded(args, tmp_path / "embedded.log", smtp, inline=8)
    assert (figures["runs"], figures["steps"]) == (3, 3 * STEPS_PER_RUN)
    assert figures["runs_per_s"] > 0
    assert sink.count == 3
    # The executor's own process, and no database server or broker beside it on SQLite.
    assert set(figures["cpu_ms_per_step"]) == {"embedded"}
