"""A transport that keeps every email it is given and delivers none: what a simulation sends."""

from __future__ import annotations

from engine.mail.message import OutgoingEmail, message_id


class RecordingTransport:
    """Accepts every email into `sent`, in order; nothing leaves the process."""

    name = "recording"

    def __init__(self) -> None:
        self.sent: list[OutgoingEmail] = []

    def send(self, email: OutgoingEmail) -> str:
        """Keep the email and return its Message-ID, as an SMTP delivery would."""
        self.sent.append(email)
        return message_id(email)

    def close(self) -> None:
        """Nothing to release."""
