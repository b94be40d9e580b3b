"""Development transports: `.eml` files in a directory, or a summary on a text stream."""

from __future__ import annotations

import email.policy
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import TextIO

from engine.errors import StepFailure, TransientStepFailure
from engine.mail.base import PROVIDER_REJECTED, PROVIDER_UNAVAILABLE
from engine.mail.message import OutgoingEmail, message_id, to_mime

# RFC 5322 lines end in CRLF, which is also what mail clients expect of an .eml file.
EML_POLICY = email.policy.SMTP.clone(cte_type="7bit")


class FileTransport:
    """Writes each email to `<directory>/<email_id>.eml`; a resend replaces the same file."""

    name = "file"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def send(self, email: OutgoingEmail) -> str:
        """Write the email atomically and return its Message-ID."""
        if Path(email.email_id).name != email.email_id or email.email_id in {"", ".", ".."}:
            text = f"email id {email.email_id!r} cannot be a file name"
            raise StepFailure(text, code=PROVIDER_REJECTED)
        data = to_mime(email).as_bytes(policy=EML_POLICY)
        target = self.directory / f"{email.email_id}.eml"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(target, data)
        except OSError as exc:
            text = f"could not write {target}: {exc.strerror or exc}"
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
        mid = message_id(email)
        summary = (
            f"email {mid}\n"
            f"  From:    {email.sender}\n"
            f"  To:      {', '.join(email.to)}\n"
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


def _write_atomically(target: Path, data: bytes) -> None:
    """Write to a temporary file beside the target, then rename it over the target."""
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
