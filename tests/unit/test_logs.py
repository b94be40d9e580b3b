"""The log filters: step ids on every line, a simulation's routine lines left out, and no
contact's address in our lines."""

from __future__ import annotations

import io
import logging

import pytest

from engine.logs import (
    HideAddresses,
    JsonFormatter,
    StepContextFilter,
    hide_addresses,
    quiet,
    step_context,
)


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


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("refused recipient bob@x.org: 550 No", "refused recipient ***: 550 No"),
        ("550 5.1.1 <bo.b+tag@mail.example.co.uk>: rejected", "550 5.1.1 <***>: rejected"),
        ("GET /contacts/ada%40example.com HTTP/1.1", "GET /contacts/*** HTTP/1.1"),
        ("to ünï@exämple.de, then", "to ***, then"),
        # Not addresses of anyone: a node name, the user of a URL, a host without a dot.
        ("celery@worker-1 ready", "celery@worker-1 ready"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:pw@127.0.0.1:6379/0"),
        ("root@localhost", "root@localhost"),
    ],
)
def test_an_address_in_a_line_is_hidden(text: str, shown: str) -> None:
    assert hide_addresses(text) == shown


def test_our_lines_and_their_tracebacks_show_no_address_others_are_left_alone() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(HideAddresses())
    handler.setFormatter(JsonFormatter())
    ours, theirs = logging.getLogger("engine.tests_hidden"), logging.getLogger("other.lib")
    for log in (ours, theirs):
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(logging.INFO)
    try:
        ours.info("step failed: recipient %s refused", "ada@example.com")
        try:
            raise RuntimeError("550 <grace@example.org> no such user")
        except RuntimeError:
            ours.exception("send failed")
        theirs.info("node %s", "celery@host.example.com")
    finally:
        for log in (ours, theirs):
            log.removeHandler(handler)
            log.propagate = True
            log.setLevel(logging.NOTSET)
    printed = out.getvalue()
    assert "ada@example.com" not in printed and "grace@example.org" not in printed, printed
    assert "recipient *** refused" in printed and "550 <***> no such user" in printed
    assert "celery@host.example.com" in printed
