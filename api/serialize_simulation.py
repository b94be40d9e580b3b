"""A simulation as the wire dict of `POST /automations/simulate`."""

from __future__ import annotations

from typing import Any

from engine.durations import format_duration, format_offset
from engine.simulation import Simulation


def simulation_body(simulation: Simulation) -> dict[str, Any]:
    """Durations and offsets humanised ("3 days 2 hours", "+1 day"), as everywhere we show them."""
    return {
        "object": "simulation",
        "status": simulation.status,
        "duration": format_duration(simulation.duration),
        "steps": [
            {
                "key": step.key,
                "type": step.type,
                "status": step.status,
                "skip_reason": step.skip_reason,
                "at": format_offset(step.at),
                "output": step.output,
                "error": step.error,
            }
            for step in simulation.steps
        ],
        "emails": [
            {
                "step_key": email.step_key,
                "at": format_offset(email.at),
                "to": email.to,
                "from": email.sender,
                "subject": email.subject,
                "html": email.html,
                "text": email.text,
                "headers": email.headers,
            }
            for email in simulation.emails
        ],
        "events": [
            {"name": event.name, "at": format_offset(event.at), "resumed_step": event.resumed}
            for event in simulation.events
        ],
    }
