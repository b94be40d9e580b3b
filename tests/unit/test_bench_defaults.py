"""The benchmarks' defaults are their own database and Redis database: a benchmark drops its
schema and flushes its Redis, so it must never default to the tests' nor a deployment's."""

from __future__ import annotations

import argparse
import importlib
from urllib.parse import urlsplit

import pytest

from bench import BENCH_DATABASE_URL, BENCH_REDIS_URL
from bench.__main__ import parse_args
from engine.settings import Settings
from tests.conftest import CONFIGURED_POSTGRES_URL, CONFIGURED_REDIS_URL, sentinel_url

WITH_ARGUMENTS = ["api_reads", "dashboard", "ingest", "latency", "simulate", "throughput"]
WITH_ARGUMENTS += ["waiting", "mass_cancel", "embedded", "ingest_growth", "accept_curve"]
# The broker_down bench has no Redis of its own to wipe: its broker is a port nothing answers.
WITHOUT_REDIS = ["broker_down"]
# Redis databases the tests may take: the configured one plus one per xdist worker.
TEST_REDIS_DBS = range(int(urlsplit(CONFIGURED_REDIS_URL).path.strip("/") or 0), 8)
# Where the tests plant their sentinel key, whichever database they are configured with and
# however many xdist workers share it (`make test` runs three): a benchmark flushing it beside a
# test session would fail that session.
SENTINEL_REDIS_DBS = {
    int(urlsplit(sentinel_url(f"redis://127.0.0.1:6379/{n}", workers)).path.strip("/"))
    for n in range(16)
    for workers in (1, 2, 3)
}


def database(url: str) -> str:
    return urlsplit(url.replace("+psycopg", "")).path.strip("/")


def redis_db(url: str) -> int:
    return int(urlsplit(url).path.strip("/") or 0)


def defaults(module: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    importlib.import_module(f"bench.{module}").add_arguments(parser)
    return parser.parse_args([])


def test_the_bench_resources_are_not_the_tests_nor_a_deployments() -> None:
    assert not database(BENCH_DATABASE_URL).startswith(database(CONFIGURED_POSTGRES_URL))
    assert redis_db(BENCH_REDIS_URL) not in TEST_REDIS_DBS
    assert redis_db(BENCH_REDIS_URL) not in SENTINEL_REDIS_DBS
    assert redis_db(BENCH_REDIS_URL) != redis_db(Settings.model_fields["broker_url"].default)


@pytest.mark.parametrize("module", WITH_ARGUMENTS)
def test_each_benchmark_defaults_to_its_own(module: str) -> None:
    args = defaults(module)
    assert database(args.database_url).startswith("bench")
    assert args.redis_url == BENCH_REDIS_URL


@pytest.mark.parametrize("module", WITHOUT_REDIS)
def test_a_benchmark_without_redis_defaults_to_its_own_database(module: str) -> None:
    args = defaults(module)
    assert database(args.database_url).startswith("bench")
    assert not hasattr(args, "redis_url")


def test_the_full_run_defaults_to_its_own() -> None:
    args = parse_args([])
    assert (args.database_url, args.redis_url) == (BENCH_DATABASE_URL, BENCH_REDIS_URL)
