# Developer entry points. `make test` is the one the README and CI use.
# VENV may be overridden: .ci/run calls `make test VENV=.venv-ci`.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Every dependency, direct and transitive, pinned: the venv, CI and the image install from it.
LOCK := constraints.txt
# Touched after a successful install, so the venv is reinstalled only when its inputs change.
STAMP := $(VENV)/.installed
# Where `make lock` resolves afresh, away from the venv in use.
LOCK_VENV := build/lock-venv

.PHONY: venv demo dev test lint fmt lock bench-setup

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@if [ ! -x "$(BIN)/python" ]; then \
		echo "creating $(VENV)"; \
		$(PYTHON) -m venv "$(VENV)"; \
	fi
	"$(BIN)/python" -m pip install --quiet -c $(LOCK) pip
	"$(BIN)/python" -m pip install -c $(LOCK) --build-constraint $(LOCK) -e '.[dev]'
	@touch "$@"

# The main job on the embedded default: SQLite, no broker, no servers to install.
demo: venv
	"$(BIN)/automations" demo

dev: venv
	"$(BIN)/automations" dev

# What the benchmarks need beyond the tests: their Python extras (matplotlib, py-spy) and the
# native load generator bench.ingest drives the API with (Debian's wrk), installed if missing.
bench-setup: venv
	"$(BIN)/python" -m pip install --quiet -c $(LOCK) -e '.[bench]'
	@command -v wrk >/dev/null || { \
		echo "installing wrk (Debian package) for bench.ingest"; \
		sudo= ; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq wrk; }

# --durations: the slowest tests in every log, so that a slow one is seen before it grows.
# Two runs of pytest at once. The fault lab's tier is one process with its own database, Redis
# server and workers; it waits on its faults about half the time. Beside it, the other tiers run
# in three pytest-xdist processes, each with its own database and Redis database
# (tests/conftest.py). They take the cores the lab leaves idle: 546 to 605 s for both on one
# host, where one after the other took 822 s (docs/benchmarks-log.md, "The suite's time").
# The lab's output goes to FAULTS_LOG and is printed once both have ended. Either failing fails
# the target.
TEST_WORKERS ?= 3
FAULTS_LOG := build/test-faults.log
# Bytecode: the tests start about 870 Python processes (workers, API servers, `automations`
# commands), and where PYTHONDONTWRITEBYTECODE is set (CI's machines set it) each compiled the
# project's modules again. They share one cache under build/ instead, kept out of the source
# tree: 14% less CPU for the whole suite, by process accounting (docs/benchmarks-log.md,
# "The suite's time").
test: export PYTHONPYCACHEPREFIX := $(CURDIR)/build/pycache
test: export PYTHONDONTWRITEBYTECODE :=
test: venv
	@mkdir -p "$(dir $(FAULTS_LOG))"
	"$(BIN)/pytest" -q -m faults --durations=5 >"$(FAULTS_LOG)" 2>&1 & faults=$$!; \
	trap 'kill $$faults 2>/dev/null' INT TERM; \
	"$(BIN)/pytest" -q -n $(TEST_WORKERS) --dist loadgroup -m "not faults" --durations=20; \
	first=$$?; \
	wait $$faults; \
	second=$$?; \
	echo "== tests/faults, run beside the others ($(FAULTS_LOG)) =="; \
	cat "$(FAULTS_LOG)"; \
	[ $$first -eq 0 ] && [ $$second -eq 0 ]

lint: venv
	"$(BIN)/ruff" check .
	"$(BIN)/ruff" format --check .
	"$(BIN)/mypy"

fmt: venv
	"$(BIN)/ruff" format .
	"$(BIN)/ruff" check --fix .

# Resolves pyproject.toml's dependencies (with the dev and bench extras) to their newest allowed
# versions in a throwaway venv and pins what was installed. Run it to take upgrades, then commit
# constraints.txt once `make test` passes on it.
lock:
	rm -rf "$(LOCK_VENV)"
	$(PYTHON) -m venv "$(LOCK_VENV)"
	"$(LOCK_VENV)/bin/python" -m pip install --quiet --upgrade pip setuptools
	"$(LOCK_VENV)/bin/python" -m pip install --quiet '.[dev,bench]'
	{ \
		echo "# Pinned versions of every dependency of automations, direct and transitive, with the"; \
		echo "# dev and bench extras, resolved on Python $$("$(LOCK_VENV)/bin/python" -c 'import platform; print(platform.python_version())'). Used as a constraints file"; \
		echo "# (pip install -c constraints.txt) by make venv, .ci/run and the Dockerfile."; \
		echo "# Do not edit by hand: \`make lock\` rewrites it from pyproject.toml."; \
		"$(LOCK_VENV)/bin/python" -m pip freeze --all --exclude automations; \
	} > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf "$(LOCK_VENV)" build/lib
	@echo "wrote $(LOCK); run make test, then commit it"
