"""Folders made for what holds secrets (the data dir, the outbox, a SQLite database's folder)
are their owner's alone from their creation."""

from __future__ import annotations

from pathlib import Path


def make_private_dir(path: Path) -> None:
    """Create `path` and its missing parents 0700 (as the umask allows); one already there,
    the operator's, keeps its mode."""
    if path.is_dir():
        return
    if path.parent != path:
        make_private_dir(path.parent)
    try:
        # mkdir's mode, not a chmod after it: no window in which the folder is open to others.
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():  # a file, or a dangling link, in its place: the caller says so
            raise
