"""tests/patience.py: a host's factor from the variable, or measured once and exported."""

from __future__ import annotations

import pytest

from tests import patience


def test_a_given_factor_stretches_every_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(patience.VARIABLE, "2.5")
    assert patience.factor() == 2.5
    assert patience.patience(20) == 50


@pytest.mark.parametrize("given", ["0.5", "9", "fast"])
def test_a_factor_out_of_bounds_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    monkeypatch.setenv(patience.VARIABLE, given)
    with pytest.raises(ValueError, match=patience.VARIABLE):
        patience.factor()


def test_a_measured_factor_is_within_bounds_and_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(patience.VARIABLE)
    measured = patience.factor()
    assert 1 <= measured <= patience.MOST
    # Exported, for the xdist workers and the processes they start.
    assert float(patience.os.environ[patience.VARIABLE]) == measured


def test_each_test_timeout_is_stretched_by_the_session_factor(
    request: pytest.FixtureRequest,
) -> None:
    marker = request.node.get_closest_marker("timeout")
    factor = patience.factor()
    if factor == 1:
        assert marker is None
    else:
        assert marker.args[0] == float(request.config.getini("timeout")) * factor
