"""Where `automations dev` and `automations demo` keep their API keys, for the client to find."""

from __future__ import annotations

from pathlib import Path

DEV_DATA_DIR = Path("data")
DEMO_DATA_DIR = Path("data/demo")
KEY_FILE_NAME = "api-key"


def key_file(data_dir: Path) -> Path:
    """The file an embedded server's key is written to."""
    return data_dir / KEY_FILE_NAME


def local_keys() -> list[tuple[Path, str]]:
    """The keys `dev` then `demo` wrote under the working directory, with their files."""
    found = []
    for data_dir in (DEV_DATA_DIR, DEMO_DATA_DIR):
        path = key_file(data_dir)
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if key:
            found.append((path, key))
    return found
