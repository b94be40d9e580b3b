"""The files that hold secrets are their owner's alone from the moment they exist (0600, under
a umask that lets others read): `automations dev`'s API key, the `.eml` files (an unsubscribe
link is a token), and the SQLite database and its WAL (contacts, emails, unsubscribe links);
the folders made for them are 0700. Each is created with that mode, never narrowed after a
window in which another local user could open it: here chmod does nothing, so a file that relied
on it shows as readable by others."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from cli.embedded import embedded_settings, owning
from cli.local_keys import key_file
from engine.db import create_db_engine
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


def test_a_new_sqlite_database_and_its_wal_are_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "automations.sqlite3"
    db_engine = create_db_engine(f"sqlite:///{path}")
    try:
        with db_engine.begin() as conn:
            conn.execute(text("CREATE TABLE contacts (email TEXT)"))
            conn.execute(text("INSERT INTO contacts VALUES ('ada@example.test')"))
        files = sorted(path.parent.iterdir())
        assert [file.name for file in files] == [
            "automations.sqlite3",
            "automations.sqlite3-shm",
            "automations.sqlite3-wal",
        ]
        assert {file.name: mode(file) for file in files} == dict.fromkeys(
            (file.name for file in files), 0o600
        )
    finally:
        db_engine.dispose()


def test_an_existing_database_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    path.touch(mode=0o640)
    db_engine = create_db_engine(f"sqlite:///{path}")
    try:
        with db_engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (n INTEGER)"))
    finally:
        db_engine.dispose()
    assert mode(path) == 0o640


def test_a_database_path_that_is_a_dangling_symlink_creates_its_target_private(
    tmp_path: Path,
) -> None:
    # SQLite follows the link (to a volume of its own, say) and puts its WAL beside the target.
    link = tmp_path / "automations.sqlite3"
    link.symlink_to("volume/automations.sqlite3")
    (tmp_path / "volume").mkdir()
    db_engine = create_db_engine(f"sqlite:///{link}")
    try:
        with db_engine.begin() as conn:
            conn.execute(text("CREATE TABLE contacts (email TEXT)"))
        files = sorted((tmp_path / "volume").iterdir())
        assert {file.name: mode(file) for file in files} == {
            "automations.sqlite3": 0o600,
            "automations.sqlite3-shm": 0o600,
            "automations.sqlite3-wal": 0o600,
        }
    finally:
        db_engine.dispose()
    assert link.is_symlink()


def test_the_folders_made_for_the_data_the_database_and_the_outbox_are_private(
    tmp_path: Path,
) -> None:
    embedded_settings(tmp_path / "dev")
    with owning(tmp_path / "demo"):
        pass
    create_db_engine(f"sqlite:///{tmp_path / 'db' / 'automations.sqlite3'}").dispose()
    FileTransport(tmp_path / "mail" / "outbox").send(make_email())
    made = ["dev", "demo", "db", "mail", "mail/outbox"]
    assert {name: mode(tmp_path / name) for name in made} == dict.fromkeys(made, 0o700)


def test_a_folder_already_there_keeps_the_mode_its_owner_gave_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # a real chmod: the folder must not be narrowed either
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    embedded_settings(shared)
    create_db_engine(f"sqlite:///{shared / 'automations.sqlite3'}").dispose()
    FileTransport(shared / "outbox").send(make_email())
    assert (mode(shared), mode(shared / "outbox")) == (0o755, 0o700)
