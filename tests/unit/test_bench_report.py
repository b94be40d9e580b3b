"""Benchmark results as Markdown and a PNG, and the runner's options (no I/O but tmp_path)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.__main__ import (
    BENCHES,
    PAGE,
    PAGE_END,
    PAGE_START,
    Bench,
    Refused,
    bench_argv,
    page_block,
    parse_args,
    run_one,
    selected,
    update_page,
)
from bench.procs import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MACHINE = {
    "cores": 2,
    "cores_usable": 2,
    "memory_gb": 7.8,
    "cpu_model": "Test CPU @ 2.0GHz",
    "platform": "Linux-6.1-x86_64",
    "python": "3.11.9",
    "packages": {"celery": "5.4.0", "SQLAlchemy": "2.0.36"},
    "postgresql": "16.4",
    "redis": "7.2.4",
    "git": "abc1234-dirty",
}


def sample() -> dict[str, Any]:
    throughput = report.result(
        "throughput",
        "Durable steps per second vs raw Celery",
        [
            report.row(
                "durable steps",
                812.0,
                "steps/s",
                baseline=1020.0,
                baseline_label="raw Celery",
                target="≥ 0.8x baseline",
                met=False,
            )
        ],
        {"durable": {"steps_per_s": 812.0}},
    )
    waiting = report.result(
        "waiting",
        "Parked runs",
        [
            report.row("bytes per waiting run", 900, "bytes", target="≤ 1 KB", met=True),
            report.row("sweeper tick", 3.25, "ms", baseline=1.5, baseline_label="empty"),
        ],
        {},
    )
    failed = report.failure("ingest", RuntimeError("the API did not start"))
    return {
        "started": "2025-01-01T00:00:00+00:00",
        "finished": "2025-01-01T00:05:00+00:00",
        "command": "python -m bench",
        "quick": False,
        "machine": MACHINE,
        "results": [throughput, waiting, failed],
    }


def test_a_row_divides_ours_by_its_baseline() -> None:
    assert report.row("x", 50.0, "ms", baseline=200.0)["ratio"] == 0.25
    assert report.row("x", 50.0, "ms")["ratio"] is None


def test_markdown_has_the_machine_and_every_row() -> None:
    text = report.markdown(sample())
    assert "| benchmark | metric | ours | baseline | ratio | target | met |" in text
    assert (
        "| throughput | durable steps | 812 steps/s | 1,020 steps/s (raw Celery) | 0.80x "
        "| ≥ 0.8x baseline | **no** |" in text
    )
    assert "| waiting | bytes per waiting run | 900 bytes | - | - | ≤ 1 KB | yes |" in text
    assert "| waiting | sweeper tick | 3.25 ms | 1.50 ms (empty) | 2.17x | - | - |" in text
    assert "2 cores (2 usable), 7.8 GB RAM, Test CPU @ 2.0GHz" in text
    assert "PostgreSQL 16.4; Redis 7.2.4; celery 5.4.0, SQLAlchemy 2.0.36" in text
    assert "abc1234-dirty" in text


def test_a_failed_benchmark_is_one_row_with_its_error() -> None:
    text = report.markdown(sample())
    assert "| ingest | **error**: RuntimeError: the API did not start | - | - | - | - | - |" in text


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "out" / "latest.png"
    report.chart(sample(), path)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_passwords_in_urls_are_masked() -> None:
    masked = report.redact({"argv": ["--database-url", "postgresql://me:secret@db/x"]})
    assert masked == {"argv": ["--database-url", "postgresql://me:***@db/x"]}


def test_a_result_out_of_contract_is_refused() -> None:
    with pytest.raises(TypeError, match="lacks"):
        report.check_result({"rows": [{"metric": "x"}]}, "broken")


def test_the_runner_runs_all_but_faults_by_default() -> None:
    options = parse_args([])
    assert not options.quick
    assert [b.name for b in selected(options)] == [
        "throughput",
        "embedded",
        "latency",
        "ingest",
        "broker_down",
        "waiting",
        "mass_cancel",
        "dashboard",
        "api_reads",
        "simulate",
    ]


def test_only_keeps_the_runner_order_and_can_name_faults() -> None:
    options = parse_args(["--only", "latency,throughput,faults", "--quick"])
    assert options.quick
    assert [b.name for b in selected(options)] == ["throughput", "latency", "faults"]
    assert parse_args(["--only", "api-reads"]).only == ["api_reads"]


def test_only_refuses_an_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--only", "nope"])
    assert "unknown benchmark(s) nope" in capsys.readouterr().err


def parser_with(*options: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    for option in options:
        parser.add_argument(option)
    return parser


def test_every_benchmark_gets_our_urls_and_quick_sizes() -> None:
    options = parse_args(
        ["--quick", "--database-url", "postgresql://h/b", "--redis-url", "redis://h:1/0"]
    )
    latency = next(b for b in BENCHES if b.name == "latency")
    parser = parser_with("--database-url", "--redis-url", "--seconds", "--max-steps-per-s")
    argv = bench_argv(latency, parser, options)
    # The latency load is half of the maximum the latency benchmark measures itself.
    assert argv == [
        "--database-url",
        "postgresql://h/b",
        "--redis-url",
        "redis://h:1/0",
        "--seconds",
        "5",
    ]


def test_faults_gets_the_same_database_by_server_and_name() -> None:
    options = parse_args(["--database-url", "postgresql+psycopg://u@h/bench_b"])
    faults = next(b for b in BENCHES if b.name == "faults")
    argv = bench_argv(faults, parser_with("--postgres-url", "--database"), options)
    assert argv == ["--postgres-url", "postgresql+psycopg://u@h/bench_b", "--database", "bench_b"]


def test_a_benchmark_without_a_database_option_is_not_run_at_its_default() -> None:
    ingest = next(b for b in BENCHES if b.name == "ingest")
    with pytest.raises(Refused):
        bench_argv(ingest, parser_with("--redis-url"), parse_args([]))


def test_a_missing_benchmark_module_is_recorded_and_skipped() -> None:
    failed = run_one(Bench("not_written_yet"), parse_args([]))
    assert failed == {
        "name": "not_written_yet",
        "error": "bench/not_written_yet.py is missing: not run",
    }


def test_the_table_goes_between_the_pages_markers(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# x\n<!-- bench:latest:start -->\nold\n<!-- bench:latest:end -->\nend\n")
    assert update_page(page, "| new |")
    assert page.read_text() == (
        "# x\n<!-- bench:latest:start -->\n| new |\n<!-- bench:latest:end -->\nend\n"
    )
    page.write_text("no markers\n")
    assert not update_page(page, "| new |")
    assert page.read_text() == "no markers\n"


def test_the_benchmarks_page_has_its_markers_and_links_the_chart() -> None:
    text = PAGE.read_text()
    assert PAGE_START in text and PAGE_END in text
    chart = ROOT / "bench" / "results" / "latest.png"
    block = page_block({"results": [], "machine": {}}, [chart], PAGE)
    assert block.endswith("(../bench/results/latest.png)\n")


def test_the_raw_celery_baseline_has_our_settings_but_the_beat_and_queue() -> None:
    from bench.raw_celery import NOT_SHARED, shared_config
    from engine.settings import Settings
    from tasks.app import celery_config

    ours = celery_config(Settings(broker_url="redis://127.0.0.1:1/0"))
    raw = shared_config("redis://127.0.0.1:1/0")
    assert raw == {key: value for key, value in ours.items() if key not in NOT_SHARED}
    assert raw["worker_send_task_events"] is False and raw["task_send_sent_event"] is False
