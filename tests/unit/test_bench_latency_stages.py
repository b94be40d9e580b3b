"""bench.latency's split by stage: stages between consecutive stamps, their rows (no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import latency, report
from bench.latency_rows import stage_rows
from bench.latency_stages import STAGES, Stamps, read_returns, split


def test_the_six_stages_run_between_consecutive_stamps_and_add_up() -> None:
    one = Stamps(100.0, 100.004, 100.005, 100.0055, 100.008, 100.009, 100.0102)
    stages = split([one])
    assert list(stages) == ["api", "queue", "claim", "render", "smtp", "record"]
    got = {name: round(values[0], 6) for name, values in stages.items()}
    assert got == {
        "api": 4.0,
        "queue": 1.0,
        "claim": 0.5,
        "render": 2.5,
        "smtp": 1.0,
        "record": 1.2,
    }
    assert sum(got.values()) == pytest.approx((one.recorded - one.sent) * 1000)


def test_a_stage_below_zero_is_kept_and_counted() -> None:
    # The worker claimed the step before the load had read the 202 that says it was published.
    early = Stamps(100.0, 100.004, 100.0035, 100.004, 100.006, 100.007, 100.008)
    values = split([early])["queue"]
    assert values[0] == pytest.approx(-0.5)
    figures = latency.summarize_stage([*values, 1.0, 2.0])
    assert (figures["count"], figures["negative"], figures["p50"]) == (3, 1, 1.0)


def test_stage_rows_give_p50_p95_p99_in_order_and_the_values_below_zero() -> None:
    events = [
        Stamps(100.0, 100.004, 100.0035, 100.004, 100.006, 100.007, 100.008),
        Stamps(101.0, 101.003, 101.004, 101.0045, 101.006, 101.007, 101.008),
    ]
    stages = {name: latency.summarize_stage(values) for name, values in split(events).items()}
    span = latency.summarize([(e.recorded - e.sent) * 1000 for e in events])
    rows = stage_rows(stages, span)
    result = report.check_result(report.result("latency", "t", rows, {}), "latency")
    metrics = [one["metric"] for one in result["rows"]]
    assert metrics[:4] == [
        f"stage api: {STAGES['api']}, p50",
        f"stage api: {STAGES['api']}, p95",
        f"stage api: {STAGES['api']}, p99",
        f"stage queue: {STAGES['queue']}, p50",
    ]
    below = [one for one in result["rows"] if one["metric"].endswith("values below 0")]
    assert [(one["metric"].split(":")[0], one["ours"]) for one in below] == [("stage queue", 1)]
    assert metrics[-1] == "event sent → email step recorded (the stages' sum), p99"
    assert len(metrics) == 6 * 3 + 1 + 2


def test_stage_rows_leave_out_a_stage_without_values() -> None:
    empty = {name: latency.summarize_stage([]) for name in STAGES}
    assert stage_rows(empty, latency.summarize([])) == []


def test_returns_are_read_by_run_for_the_step_asked(tmp_path: Path) -> None:
    (tmp_path / "11.txt").write_text("r1 mail 100.5\nr2 other 100.6\nr1 mail 101.0\n")
    (tmp_path / "12.txt").write_text("r3 mail 102.25\n")
    assert read_returns(tmp_path, "mail") == {"r1": 100.5, "r3": 102.25}
