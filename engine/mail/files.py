"""Development transports: `.eml` files in a directory, or a summary on a text stream."""

from __future__ import annotations

import glob
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import TextIO

from engine.errors import StepFailure, TransientStepFailure
from engine.mail.base import PROVIDER_REJECTED, PROVIDER_UNAVAILABLE
from engine.mail.message import POLICY, OutgoingEmail, checked_recipient, message_id, to_mime
from engine.private_files import make_private_dir

# RFC 5322 lines end in CRLF, which is also what mail clients expect of an .eml file.
EML_POLICY = POLICY.clone(linesep="\r\n")
# Far more attempts than any retry policy makes; past it something is looping.
MAX_ATTEMPT_FILES = 1000


class FileTransport:
    """Writes each send of an email to `<directory>/<email_id>.<attempt>.eml`, attempts counted
    from 1 and never overwritten, so that a second send of one email shows as a second file."""

    name = "file"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def send(self, email: OutgoingEmail) -> str:
        """Write the email atomically and return its Message-ID."""
        if Path(email.email_id).name != email.email_id or email.email_id in {"", ".", ".."}:
            text = f"email id {email.email_id!r} cannot be a file name"
            raise StepFailure(text, code=PROVIDER_REJECTED)
        data = to_mime(email).as_bytes(policy=EML_POLICY)
        try:
            make_private_dir(self.directory)
            _write_new_file(self.directory, email.email_id, data)
        except OSError as exc:
            text = (
                f"could not write {email.email_id}.eml to {self.directory}: {exc.strerror or exc}"
            )
            raise TransientStepFailure(text, code=PROVIDER_UNAVAILABLE) from exc
        return message_id(email)

    def close(self) -> None:
        """Nothing to release."""


class ConsoleTransport:
    """Prints a short summary of each email to a text stream."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        # One write per email, but a lock keeps summaries whole on streams that split writes.
        self._lock = threading.Lock()

    def send(self, email: OutgoingEmail) -> str:
        """Print the summary and return the email's Message-ID."""
        recipient = checked_recipient(email)
        mid = message_id(email)
        summary = (
            f"email {mid}\n"
            f"  From:    {email.sender}\n"
            f"  To:      {recipient}\n"
            f"  Subject: {email.subject}\n"
        )
        # Looked up per send so that a replaced sys.stdout (pytest's capture) is honoured.
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(summary)
            stream.flush()
        return mid

    def close(self) -> None:
        """Nothing to release; the stream belongs to the caller."""


def attempt_number(path: Path) -> int:
    """The attempt a file of the outbox holds: 2 for `<email_id>.2.eml` (0 if not one)."""
    _, _, number = path.name.removesuffix(".eml").rpartition(".")
    return int(number) if number.isdigit() else 0


def _attempt_files(email_id: str) -> str:
    return f"{glob.escape(email_id)}.*.eml"


def _write_new_file(directory: Path, email_id: str, data: bytes) -> Path:
    """Write to a temporary file, then link it under the first free `<email_id>.<n>.eml`.

    A hard link never replaces an existing name, so two workers sending the same email at
    once (a lease taken over) each get a file of their own, and a reader never sees half a file.
    mkstemp makes it 0600 whatever the umask, and the link keeps that: an email's unsubscribe
    link is a token, for its recipient alone.
    """
    handle, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{email_id}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        written = directory.glob(_attempt_files(email_id))
        start = 1 + max((attempt_number(path) for path in written), default=0)
        for attempt in range(start, start + MAX_ATTEMPT_FILES):
            target = directory / f"{email_id}.{attempt}.eml"
            try:
                os.link(tmp_name, target)
            except FileExistsError:
                continue
            return target
        raise OSError(f"more than {MAX_ATTEMPT_FILES} files for one email")
    finally:
        Path(tmp_name).unlink(missing_ok=True)
