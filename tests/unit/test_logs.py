"""The log filter: step ids on every line, and a simulation's routine lines left out."""

from __future__ import annotations

import logging

from engine.logs import StepContextFilter, quiet, step_context


def test_inside_quiet_only_warnings_and_worse_pass() -> None:
    kept: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = kept.append  # type: ignore[method-assign]
    handler.addFilter(StepContextFilter())
    log = logging.getLogger("tests.quiet")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with step_context(run_id="r1", step_key="s1"):
            log.info("real step")
            with quiet():
                log.info("simulated step")
                log.warning("simulated trouble")
            log.info("real again")
    finally:
        log.removeHandler(handler)
    assert [r.getMessage() for r in kept] == ["real step", "simulated trouble", "real again"]
    assert all(getattr(r, "run_id", None) == "r1" for r in kept)
