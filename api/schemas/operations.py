"""Answers of the endpoints an operator's probes call: liveness and readiness."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.shapes import Answer, Timestamp
from models.enums import SweeperStatus


class Health(Answer):
    status: Literal["ok"] = "ok"


class Readiness(Answer):
    """`ok` with 200 when every check is `ok`; `unavailable` with 503 otherwise."""

    status: Literal["ok", "unavailable"]
    database: str = Field(description="`ok`, or `unreachable: <error class>`")
    broker: str = Field(description="`ok`, or `unreachable: <error class>`")


class SweeperHealthAnswer(Answer):
    """200 while the sweeper ticks (or waits for its first tick); 503 once it is late."""

    status: SweeperStatus = Field(
        description="`ok`: ticked within `late_after_seconds`; `waiting`: no tick yet, but "
        "the heartbeat was set up (the schema upgraded) less than `late_after_seconds` ago; "
        "`late`: neither"
    )
    last_tick_at: Timestamp | None = Field(description="When the last completed tick began")
    age_seconds: float | None = Field(
        description="Seconds since the last tick, or since the heartbeat was set up when none "
        "has completed; null if the heartbeat row is missing"
    )
    late_after_seconds: float = Field(description="AUTOMATIONS_SWEEPER_LATE_AFTER_SECONDS")
