"""Answers of the endpoints an operator's probes call: liveness and readiness."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.shapes import Answer


class Health(Answer):
    status: Literal["ok"] = "ok"


class Readiness(Answer):
    """`ok` with 200 when every check is `ok`; `unavailable` with 503 otherwise."""

    status: Literal["ok", "unavailable"]
    database: str = Field(description="`ok`, or `unreachable: <error class>`")
    broker: str = Field(description="`ok`, or `unreachable: <error class>`")
