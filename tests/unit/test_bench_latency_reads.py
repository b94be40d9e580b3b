"""bench/latency.py and bench/api_reads.py: their arithmetic, parsing and SQL shape (no I/O)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import types
import uuid
from typing import TypeVar

import pytest
from sqlalchemy import Table

from bench import api_reads, api_reads_data, latency, latency_load, report
from models.tables import Contact, Event, Run, RunStep
from tests.loops import run_loop

T = TypeVar("T")


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert latency.percentile(values, 50) == 50
    assert latency.percentile(values, 99) == 99
    assert latency.percentile(values, 100) == 100
    assert latency.percentile([7.0], 99) == 7
    assert math.isnan(latency.percentile([], 50))


def test_summarize_sorts_and_rounds() -> None:
    figures = latency.summarize([3.0, 1.0, 2.0])
    assert figures == {"count": 3, "p50": 2.0, "p95": 3.0, "p99": 3.0, "max": 3.0, "mean": 2.0}
    assert latency.summarize([]) == {"count": 0}


def test_sink_keys_arrivals_by_the_seq_in_the_subject() -> None:
    seen = latency_load.Arrivals()
    sink = latency_load.SinkHandler(seen)
    message = b"From: b@bench.test\r\nSubject: Latency seq=42\r\n\r\n<p>Event 42</p>\r\n"
    answer = run_loop(sink.handle_DATA(None, None, types.SimpleNamespace(content=message)))
    run_loop(sink.handle_DATA(None, None, types.SimpleNamespace(content=b"Subject: hi\r\n\r\n")))
    assert answer == "250 OK"
    assert list(seen.arrivals) == [42]
    assert seen.unparsed == 1


def load(sent: list[latency.Sent], seen: latency_load.Arrivals) -> latency.LoadResult:
    return latency.LoadResult([1.0], None, 10.0, "--rate", sent, load_began=100.0, seen=seen)


def test_analyse_skips_the_warm_up_and_counts_lost_and_refused() -> None:
    sent = [
        latency.Sent(0, scheduled=100.5, sent=100.5, accepted=100.51, status=202),  # warm-up
        latency.Sent(1, scheduled=102.0, sent=102.0, accepted=102.01, status=202),
        latency.Sent(2, scheduled=102.1, sent=102.1, accepted=102.11, status=202),  # lost
        latency.Sent(3, scheduled=102.2, sent=102.2, accepted=102.21, status=500),  # refused
    ]
    seen = latency_load.Arrivals(arrivals={0: 100.6, 1: 102.02})
    figures = latency.analyse(load(sent, seen), warmup=2)
    assert (figures["timed"], figures["arrived"], figures["lost"], figures["rejected"]) == (
        3,
        1,
        1,
        1,
    )
    assert figures["sent_to_sink_ms"]["p50"] == pytest.approx(20, abs=0.01)
    assert figures["accepted_to_sink_ms"]["p50"] == pytest.approx(10, abs=0.01)
    assert figures["achieved_rate"] == pytest.approx(10, abs=0.1)


def test_latency_rows_follow_the_contract_and_judge_the_targets() -> None:
    figures = {
        "sent_to_sink_ms": {"count": 2, "p50": 8.0, "p95": 30.0, "p99": 60.0, "max": 70.0},
        "accepted_to_sink_ms": {"count": 2, "p50": 4.0, "p99": 40.0},
        "send_round_trip_ms": {"count": 2, "p50": 4.0, "p99": 20.0},
        "timed": 2,
        "lost": 0,
        "rejected": 0,
        "achieved_rate": 50.0,
    }
    health = {"p50": 2.0, "p95": 3.0, "p99": 4.0}
    result = report.check_result(
        report.result("latency", "t", latency.rows_of(figures, health), {}), "latency"
    )
    by_metric = {one["metric"]: one for one in result["rows"]}
    p50 = by_metric["event sent → email at sink, p50"]
    assert (p50["ratio"], p50["met"]) == (4.0, True)
    assert by_metric["event sent → email at sink, p99"]["met"] is False


class _Pipeline:
    """A client and a sink in one: answers each send at once, and lets the accepted events
    reach the sink at `rate` per second; notes the most ever sent and not yet arrived."""

    def __init__(self, rate: float) -> None:
        self.rate, self.began = rate, time.perf_counter()
        self.accepted: list[int] = []
        self.most_ahead = 0

    def request_bytes(self, method: str, path: str, body: bytes | None = None) -> bytes:
        return body or b""

    async def send(self, request: bytes) -> latency_load.Answer:
        sent = time.perf_counter()
        self.accepted.append(json.loads(request)["payload"]["seq"])
        self.most_ahead = max(self.most_ahead, len(self.accepted) - self.count())
        await asyncio.sleep(0)
        return latency_load.Answer(202, b"{}", sent, time.perf_counter())

    def count(self) -> int:
        due = int((time.perf_counter() - self.began) * self.rate)
        return min(due, len(self.accepted))

    def snapshot(self) -> latency_load.Arrivals:
        arrived = {seq: 0.0 for seq in self.accepted[: self.count()]}
        return latency_load.Arrivals(arrived, dict(arrived))


def test_the_maximum_is_the_steady_rate_of_single_events_within_the_window() -> None:
    pipeline = _Pipeline(rate=200.0)
    found = run_loop(latency.measure_max(pipeline, pipeline, 0.6, 8, grace=2))  # type: ignore[arg-type]
    assert 160 <= found["runs_per_s"] <= 240
    assert pipeline.most_ahead <= 8  # the queue never held more than the window
    assert found["arrived"] == found["events"] == len(pipeline.accepted)


def test_the_maximum_refuses_a_pipeline_that_delivers_nothing() -> None:
    pipeline = _Pipeline(rate=0.0)
    with pytest.raises(RuntimeError, match="no email reached the SMTP sink"):
        run_loop(latency.measure_max(pipeline, pipeline, 0.2, 4, grace=0.1))  # type: ignore[arg-type]


def test_rate_is_half_the_maximum_unless_given() -> None:
    args = types.SimpleNamespace(rate=None, max_steps_per_s=300.0)
    assert latency.choose_rate(args, None) == (150.0, "half of --max-steps-per-s")  # type: ignore[arg-type]
    args = types.SimpleNamespace(rate=None, max_steps_per_s=None)
    maximum = {"runs_per_s": 80.0}
    assert latency.choose_rate(args, maximum)[0] == 40.0  # type: ignore[arg-type]
    args = types.SimpleNamespace(rate=12.0, max_steps_per_s=300.0)
    assert latency.choose_rate(args, None)[0] == 12.0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sql", "table"),
    [
        (api_reads_data.SEED_CONTACTS, Contact.__table__),
        (api_reads_data.SEED_EVENTS, Event.__table__),
        (api_reads_data.SEED_RUNS, Run.__table__),
        (api_reads_data.SEED_STEPS, RunStep.__table__),
    ],
)
def test_seeding_sql_fills_every_column_without_a_server_default(sql: str, table: Table) -> None:
    listed = re.search(r"INSERT INTO \w+ \(([^)]*)\)", sql)
    assert listed is not None
    named = {name.strip() for name in listed.group(1).split(",")}
    required = {c.name for c in table.columns if c.server_default is None}
    assert required <= named, f"{table.name}: not seeded: {sorted(required - named)}"
    assert named <= {c.name for c in table.columns}


def test_reads_name_real_paths() -> None:
    automations = [str(uuid.uuid4()) for _ in range(3)]
    sampled = [(automations[n % 3], str(uuid.uuid4())) for n in range(5)]
    paths = api_reads.reads(automations, ["c1", "c2"], sampled)
    assert paths["GET /health"](0) == "/health"
    assert paths["runs ?status=failed&limit=20"](0).endswith("/runs?status=failed&limit=20")
    cursor = "runs ?status=failed&after=<cursor further down> (default page)"
    assert paths[cursor](1).endswith("after=c2")
    detail = paths["run detail (random run)"](0).split("/")
    assert detail[1] == "automations" and detail[3] == "runs"
    assert (detail[2], detail[4]) == sampled[0]
    assert paths["run detail (random run)"](6).split("/")[4] == sampled[1][1]


def test_a_reads_items_are_the_runs_or_steps_of_its_json_answer() -> None:
    assert api_reads.items_in(b'{"object": "list", "data": [{}, {}, {}]}') == 3
    assert api_reads.items_in(b'{"id": "r", "steps": [{}]}') == 1
    assert api_reads.items_in(b"<!doctype html><p>a page</p>") == 0
