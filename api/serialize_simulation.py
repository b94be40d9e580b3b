"""A simulation as the answer of `POST /automations/simulate`."""

from __future__ import annotations

from api.schemas.simulation import SimulatedEmail, SimulatedEvent, SimulatedStep, Simulation
from engine.durations import format_duration, format_offset
from engine.simulation import Simulation as Played


def simulation_body(simulation: Played) -> Simulation:
    """Durations and offsets humanised ("3 days 2 hours", "+1 day"), as everywhere we show them."""
    return Simulation.model_validate(
        {
            "status": simulation.status,
            "duration": format_duration(simulation.duration),
            "steps": [
                SimulatedStep.model_validate(
                    {
                        "key": step.key,
                        "type": step.type,
                        "status": step.status,
                        "skip_reason": step.skip_reason,
                        "at": format_offset(step.at),
                        "output": step.output,
                        "error": step.error,
                    }
                )
                for step in simulation.steps
            ],
            "emails": [
                SimulatedEmail(
                    step_key=email.step_key,
                    at=format_offset(email.at),
                    to=email.to,
                    sender=email.sender,
                    subject=email.subject,
                    html=email.html,
                    text=email.text,
                    headers=dict(email.headers),
                )
                for email in simulation.emails
            ],
            "events": [
                SimulatedEvent(
                    name=event.name, at=format_offset(event.at), resumed_step=event.resumed
                )
                for event in simulation.events
            ],
        }
    )
