# Developer entry points. `make test` is the one the README and CI use.
# VENV may be overridden: .ci/run calls `make test VENV=.venv-ci`.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Touched after a successful install, so the venv is reinstalled only when pyproject.toml changes.
STAMP := $(VENV)/.installed

.PHONY: venv demo dev test lint fmt

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x "$(BIN)/python" ]; then \
		echo "creating $(VENV)"; \
		$(PYTHON) -m venv "$(VENV)" && "$(BIN)/python" -m pip install --quiet --upgrade pip; \
	fi
	"$(BIN)/python" -m pip install -e '.[dev]'
	@touch "$@"

# The main job on the embedded default: SQLite, no broker, no servers to install.
demo: venv
	"$(BIN)/automations" demo

dev: venv
	"$(BIN)/automations" dev

test: venv
	"$(BIN)/pytest" -q

lint: venv
	"$(BIN)/ruff" check .
	"$(BIN)/ruff" format --check .
	"$(BIN)/mypy"

fmt: venv
	"$(BIN)/ruff" format .
	"$(BIN)/ruff" check --fix .
