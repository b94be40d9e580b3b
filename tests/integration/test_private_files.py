"""The files that hold secrets are their owner's alone from the moment they exist (0600, under
a umask that lets others read): `automations dev`'s API key, the `.eml` files (an unsubscribe
link is a token). Each is created with that mode, never narrowed after a window in which
another local user could open it: here chmod does nothing, so a file that relied on it shows as
readable by others."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.embedded import embedded_settings
from cli.local_keys import key_file
from engine.mail.files import FileTransport
from tests.integration.test_transports import make_email


@pytest.fixture(autouse=True)
def permissive_umask(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Files created 0644 unless asked otherwise; a chmod after the fact does nothing."""
    monkeypatch.setattr(os, "chmod", lambda *_, **__: None)
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_dev_api_key_file_is_private_from_its_creation(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    settings = embedded_settings(data_dir)
    path = key_file(data_dir)
    assert mode(path) == 0o600
    assert settings.api_key is not None
    assert path.read_text() == settings.api_key.get_secret_value()
    assert [entry.name for entry in data_dir.iterdir()] == [path.name]  # no temporary left
    # The next start reads the same key, and leaves the file as it is.
    again = embedded_settings(data_dir)
    assert again.api_key == settings.api_key and mode(path) == 0o600


def test_an_eml_file_is_private_from_its_creation(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    FileTransport(outbox).send(make_email())
    FileTransport(outbox).send(make_email())
    written = sorted(outbox.iterdir())
    assert [path.suffix for path in written] == [".eml", ".eml"]
    assert [mode(path) for path in written] == [0o600, 0o600]
