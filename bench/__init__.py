"""Benchmarks: each figure is measured next to a baseline in the same run."""

# What a benchmark wipes by default: a database and a Redis database of its own. Never the
# tests' (`test`, `test_gw<N>`; Redis 0 and up, one per xdist worker; their sentinel key in
# Redis 15, or 11) nor a local deployment's broker (Redis 0), whose queues a benchmark purges
# and whose tables it drops.
BENCH_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1/bench"
BENCH_REDIS_URL = "redis://127.0.0.1:6379/12"
