"""What every email transport offers, and the error codes it raises."""

from __future__ import annotations

from typing import Protocol

from engine.mail.message import OutgoingEmail

# Error codes carried by StepFailure / TransientStepFailure raised from a transport.
SMTP_UNAVAILABLE = "smtp_unavailable"
SMTP_REJECTED = "smtp_rejected"
PROVIDER_UNAVAILABLE = "provider_unavailable"
PROVIDER_REJECTED = "provider_rejected"


class Transport(Protocol):
    """Delivers an OutgoingEmail and returns the provider's id for it."""

    # Contract of `send`: TransientStepFailure when trying again later may succeed (the caller
    # retries with the same email, so the same Message-ID / Idempotency-Key), StepFailure when
    # it cannot; one of the codes above; a one-line message that never contains a secret.

    name: str

    def send(self, email: OutgoingEmail) -> str: ...

    def close(self) -> None: ...
