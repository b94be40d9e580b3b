"""What a step sees while it executes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from engine.graph import Graph, Step
from engine.runtime import Runtime
from engine.store import runs as run_store
from engine.store.claims import ClaimedStep, RunContext
from engine.store.contacts import contact_view


@dataclass
class StepRun:
    session: Session
    rt: Runtime
    graph: Graph
    step: Step
    claimed: ClaimedStep
    run: RunContext
    now: dt.datetime
    # A statement of the step's own stamped its start (what runs.mark_started does), so the
    # executor need not: a delivery's prepare may carry it in its write.
    start_stamped: bool = False
    # What the claim's statement read for the step (StepTypeSpec.reads_on_claim), parsed;
    # None if it did not: the step reads for itself.
    claim_read: Any = None
    _variables: dict[str, Any] | None = field(default=None, repr=False)
    _read_wait_events: bool = field(default=False, repr=False)

    @property
    def first_execution(self) -> bool:
        """False when the step already started once (a delay or wait coming back when due)."""
        return self.claimed.started_at is None

    def variables(self, *, wait_events: bool = False) -> dict[str, Any]:
        """The context conditions and templates read: event, contact and received wait events
        (read when the step's config mentions them, or when `wait_events` asks: a template's
        placeholders, which the config does not show)."""
        if self._variables is None:
            contact = self.run.contact
            self._variables = {
                "event": self.run.event_payload,
                "contact": contact_view(contact) if contact is not None else {},
                "wait_events": {},
            }
        if (wait_events or self.step.reads_wait_events) and not self._read_wait_events:
            self._variables["wait_events"] = self._wait_events()
            self._read_wait_events = True
        return self._variables

    def _wait_events(self) -> dict[str, Any]:
        outputs = run_store.wait_outputs(self.session, self.claimed.run_id)
        return {out["event"]: out.get("payload", {}) for out in outputs if "event" in out}
