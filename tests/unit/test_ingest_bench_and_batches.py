"""The ingest benchmark's reading of wrk, and the broker batch's checks (no I/O)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import types
from pathlib import Path

import pytest

from bench import accept_curve, api_reads, ingest, loadgen
from engine.errors import InvalidInput
from engine.ingest import RejectedEvent
from tasks.events import MAX_BATCH, batch_requests

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8000/events/send
  2 threads and 32 connections
Requests/sec:   1000.00
BENCH_RESULT {"requests":5000,"duration_us":5000000,"status_errors":2,"socket_errors":1,\
"timeouts":0,"p50_us":2500,"p90_us":6000,"p99_us":12000,"max_us":30000}
"""


def test_the_result_line_gives_rates_latencies_errors_and_the_clients_cores() -> None:
    load = loadgen._parse(WRK_OUTPUT, cpu_seconds=0.5)
    assert load.per_second == 1000
    assert (load.p50_ms, load.p99_ms, load.max_ms) == (2.5, 12, 30)
    assert load.errors == 3
    assert load.client_cores == pytest.approx(0.1)


def test_output_without_the_result_line_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match="no result line"):
        loadgen._parse("wrk: invalid URL\n", cpu_seconds=0)


def test_a_missing_wrk_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loadgen.shutil, "which", lambda _: None)
    with pytest.raises(loadgen.LoadGeneratorMissing, match="make bench-setup"):
        loadgen.wrk_binary()


# A stand-in for wrk: spends `cpu` seconds of CPU, then prints the result line of a 1 s run.
FAKE_WRK = """#!{python}
import json, time
start = time.process_time()
while time.process_time() - start < {cpu}:
    pass
figures = dict(requests=100, duration_us=1_000_000, status_errors=0, socket_errors=0,
               timeouts=0, p50_us=1000, p90_us=2000, p99_us=3000, max_us=4000)
print("BENCH_RESULT " + json.dumps(figures))
"""


@pytest.mark.parametrize(("cpu", "bound"), [(0.0, False), (0.8, True)])
def test_a_client_that_takes_more_than_half_a_core_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu: float, bound: bool
) -> None:
    """The CPU is the client process's own, read from /proc, not what it reports."""
    wrk = tmp_path / "wrk"
    wrk.write_text(FAKE_WRK.format(python=sys.executable, cpu=cpu))
    wrk.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    shot = loadgen.Shot("http://127.0.0.1:9/health", "health", seconds=1, connections=1)
    if bound:
        with pytest.raises(loadgen.ClientBound, match="the client may be the bottleneck"):
            loadgen.fire(shot, api_key="k", run_id="r")
    else:
        load = loadgen.fire(shot, api_key="k", run_id="r")
        assert (load.requests, load.client_cores < loadgen.MAX_CLIENT_CORES) == (100, True)


def test_batch_events_get_the_producers_key_or_one_from_the_task_and_index() -> None:
    requests = batch_requests(
        [
            {"event": "a", "email": "x@example.test", "idempotency_key": "mine"},
            {"event": "a", "contact_id": "c0ffee00-0000-4000-8000-000000000000"},
        ],
        "task-1",
    )
    assert [r.idempotency_key for r in requests] == ["mine", "celery-task:task-1:1"]


@pytest.mark.parametrize(
    ("events", "index", "message"),
    [
        ([], 0, "1 to 100 events"),
        ([{"event": "a"}] * (MAX_BATCH + 1), 0, "1 to 100 events"),
        ("not a list", 0, "1 to 100 events"),
        ([{"event": "a"}, {"event": "a", "colour": "red"}], 1, "unknown fields ['colour']"),
        ([{"event": "a"}, "text"], 1, "unknown fields"),
        ([{"email": "x@example.test"}], 0, "Missing `event` field."),
    ],
)
def test_a_malformed_batch_is_refused_with_the_index_of_its_first_bad_event(
    events: object, index: int, message: str
) -> None:
    with pytest.raises(RejectedEvent) as refused:
        batch_requests(events, "task-1")
    assert refused.value.index == index
    assert isinstance(refused.value.error, InvalidInput)
    assert message in refused.value.message


def test_the_latency_load_paces_every_connection_to_reach_half_the_maximum() -> None:
    # The server answers in `latency` ms whatever the load: a connection's cycle is its pace
    # plus that, and the rate --connections / cycle.
    fired: list[dict[str, float]] = []
    latency = 4.0

    def fire(path: str, mode: str, **shot: float) -> types.SimpleNamespace:
        fired.append(shot)
        return types.SimpleNamespace(per_second=32 * 1000 / (shot["pace_ms"] + latency))

    load = ingest.half_rate(fire, 1000.0, connections=32, threads=2, seconds=8)
    assert [shot["connections"] for shot in fired] == [32, 32]
    assert fired[0]["pace_ms"] == pytest.approx(64)  # 32 connections at 500/s with no latency
    assert fired[1]["pace_ms"] == pytest.approx(60)  # the 4 ms it measured taken off
    assert load.per_second == pytest.approx(500)
    # Answers slower than the pace the rate needs: back to back, never a negative pace.
    fired.clear()
    latency = 30.0
    ingest.half_rate(fire, 3000.0, connections=32, threads=2, seconds=8)
    assert fired[1]["pace_ms"] == 0


def test_the_accept_curves_shots_are_connections_and_a_pace() -> None:
    assert accept_curve.shot_list("1:0,128:60") == [(1, 0.0), (128, 60.0)]
    assert accept_curve.shot_list("4") == [(4, 0.0)]  # no pace: back to back
    for bad in ("", "four:0", "0:10", "8:-1", "8:slow"):
        with pytest.raises(argparse.ArgumentTypeError):
            accept_curve.shot_list(bad)


def test_connections_are_one_count_or_several_and_the_best_run_is_the_fastest_clean_one() -> None:
    assert ingest.connection_counts("32") == (32,)
    assert ingest.connection_counts("128,8,32,8") == (8, 32, 128)
    for bad in ("", "eight", "0,32"):
        with pytest.raises(argparse.ArgumentTypeError):
            ingest.connection_counts(bad)

    def load(requests: int, errors: int = 0) -> loadgen.Load:
        return loadgen.Load(requests, 5.0, errors, 0, 0, 1.0, 2.0, 3.0, 4.0, 0.1)

    clean, slower, refused = load(5000), load(4000), load(9000, errors=3)
    assert max([refused, slower, clean], key=ingest.fastest) is clean


def test_the_latency_load_probes_again_when_the_latency_grows_with_the_rate() -> None:
    # Latency 2 ms plus 0.02 ms per request/s: the first correction undershoots the target.
    paces: list[float] = []

    def fire(path: str, mode: str, **shot: float) -> types.SimpleNamespace:
        paces.append(shot["pace_ms"])
        fixed, slope, connections = 2 + shot["pace_ms"], 0.02, 32 * 1000
        rate = (-fixed + math.sqrt(fixed**2 + 4 * slope * connections)) / (2 * slope)
        return types.SimpleNamespace(per_second=rate)

    load = ingest.half_rate(fire, 1000.0, connections=32, threads=2, seconds=8)
    assert len(paces) == 3  # two probes, then the run
    assert paces[0] > paces[1] > paces[2]
    assert load.per_second == pytest.approx(500, rel=0.01)


@pytest.mark.parametrize("bench", [ingest, api_reads], ids=["ingest", "api_reads"])
def test_a_run_writes_the_committed_record_only_when_asked(bench: types.ModuleType) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    assert parser.parse_args([]).results is None
    asked = parser.parse_args(["--results", f"bench/results/{bench.RESULTS.name}"]).results
    assert asked is not None and asked.name == bench.RESULTS.name
