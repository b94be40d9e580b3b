"""Simulate an automation: its run on virtual time, nothing stored or sent."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Authenticated, Rt
from api.schemas.simulation import SimulateAutomation, Simulation
from api.serialize_simulation import simulation_body
from api.wire import StoredJson, stored_json
from engine.scenario import parse_scenario
from engine.simulation import simulate

router = APIRouter(tags=["automations"])


@router.post(
    "/automations/simulate", summary="Simulate a run of an automation", response_model=Simulation
)
def simulate_run(body: SimulateAutomation, rt: Rt, _: Authenticated) -> StoredJson:
    """The path, statuses and emails of a run for this contact and these events, on virtual
    time: the real engine code against a throwaway store. Nothing is stored, sent or queued."""
    scenario = parse_scenario(body.model_dump(exclude_none=True))
    return stored_json(simulation_body(simulate(rt, scenario)))
