"""One error hierarchy for the runtime; the API maps it to HTTP in one place."""

from typing import Any


class AutomationsError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "application_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # What a log line, a task's result or Flower may show of it (docs/security.md).
        self.loggable = message
        if code is not None:
            self.code = code


class InvalidInput(AutomationsError):
    """Bad input from a caller: nothing was written. Maps to HTTP 422."""

    code = "validation_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        given: str | None = None,
    ) -> None:
        """`given`: the caller's value, quoted back to the caller at the message's end ("; got
        'a@b'") and left out of `loggable`: it may be a person's address."""
        super().__init__(message if given is None else f"{message}; got {given}", code=code)
        self.field = field
        self.loggable = message


class NotFound(AutomationsError):
    code = "not_found"


class Forbidden(AutomationsError):
    """The caller's key does not allow this. Maps to HTTP 401, as Resend answers it."""

    code = "restricted_api_key"


class Conflict(AutomationsError):
    """The request is valid but the current state forbids it (e.g. cancel a completed run)."""

    code = "validation_error"


class Contended(AutomationsError):
    """Another request changed the same thing at the same moment. Maps to HTTP 409."""

    code = "conflict"


class StepFailure(AutomationsError):
    """A step cannot succeed with the data it has; retrying would not help."""

    code = "step_failed"

    def as_error(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code}


class TransientStepFailure(StepFailure):
    """A step failed for a reason that may pass (connection refused, provider 5xx)."""

    code = "transient_failure"
