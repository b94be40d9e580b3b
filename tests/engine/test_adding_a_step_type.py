"""A step type added from this one module, as docs/architecture.md "Adding a step type" shows:
its spec reaches the executor, the API's validation and the dashboard's graph, and nothing else
has to change."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from api.app import create_app
from engine.dispatch import NullDispatcher
from engine.graph import validate_graph
from engine.outcomes import Completed, Outcome
from engine.step_types import (
    DEFAULT_ONLY,
    StepTypeSpec,
    all_specs,
    config_model,
    find,
    register,
    unregister,
)
from engine.steps.context import StepRun
from engine.store import contacts as contact_store
from tasks.app import create_celery_app
from tests.engine.conftest import MakeDriver
from tests.engine.driver import Driver
from tests.loops import run_loop
from web.graph_layout import render

API_KEY = "re_engine_tier_key_for_the_toy_step"


# -- the toy step type: all of it --------------------------------------------------------------


class TagConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: str = Field(min_length=1, max_length=40)


def run_tag_contact(sr: StepRun) -> Outcome:
    contact = sr.run.contact
    assert contact is not None
    locked = contact_store.lock_contact(sr.session, contact.id)
    assert locked is not None
    tag = sr.step.config["tag"]
    contact_store.update_contact_row(sr.session, locked, {"properties": {"tag": tag}}, sr.now)
    return Completed(output={"contact_id": str(contact.id), "tag": tag})


def summarise(config: Mapping[str, Any]) -> str:
    return f"tag {config.get('tag', '')}"


TAG_CONTACT = StepTypeSpec(
    name="tag_contact",
    check_config=config_model(TagConfig),
    handler=run_tag_contact,
    connection_types=DEFAULT_ONLY,
    label="tag contact",
    instant=True,
    summary=summarise,
)

# -- the tests ---------------------------------------------------------------------------------

STEPS = [
    {"key": "start", "type": "trigger", "config": {"event_name": "user.created"}},
    {"key": "tag", "type": "tag_contact", "config": {"tag": "vip"}},
    {"key": "wait", "type": "delay", "config": {"duration": "1 day"}},
]
CONNECTIONS = [{"from": "start", "to": "tag"}, {"from": "tag", "to": "wait"}]


@pytest.fixture
def tag_contact() -> Iterator[StepTypeSpec]:
    register(TAG_CONTACT)
    yield TAG_CONTACT
    unregister(TAG_CONTACT.name)


@pytest.mark.usefixtures("tag_contact")
def test_the_executor_runs_it(make_driver: MakeDriver) -> None:
    driver: Driver = make_driver(inline_steps=0)
    driver.automation(STEPS, CONNECTIONS)
    started = driver.send("user.created", "toy@example.test")
    # Instant: with inline steps it would run in the trigger's task; without, it is a message.
    assert [d.step_type for d in driver.dispatched()] == ["tag_contact"]
    driver.settle()
    (run_id,) = started.run_ids
    assert driver.run(run_id).status == "completed"
    steps = driver.steps(run_id)
    assert steps["tag"].status == "completed"
    assert steps["tag"].output["tag"] == "vip"
    assert steps["wait"].status == "completed"


@pytest.mark.usefixtures("tag_contact")
def test_an_instant_type_runs_inline(driver: Driver) -> None:
    again = {"key": "again", "type": "tag_contact", "config": {"tag": "gold"}}
    driver.automation([*STEPS[:2], again], [*CONNECTIONS[:1], {"from": "tag", "to": "again"}])
    (run_id,) = driver.send("user.created", "inline@example.test").run_ids
    driver.settle()
    # The second tag step ran in the first one's task, behind its commit: one message in all.
    assert driver.executions == 1
    assert driver.run(run_id).status == "completed"
    assert driver.steps(run_id)["again"].output["tag"] == "gold"


def post_automation(driver: Driver, steps: list[dict[str, Any]]) -> httpx.Response:
    """POST /automations to the real app, in process, on the driver's database."""
    app = create_app(driver.rt.settings, runtime=driver.rt, dispatcher=NullDispatcher())
    body = {"name": "toy", "steps": steps, "connections": CONNECTIONS[: len(steps) - 1]}

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api.test",
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as client:
            return await client.post("/automations", json=body)

    return run_loop(post())


@pytest.mark.usefixtures("tag_contact")
def test_the_api_accepts_it(make_driver: MakeDriver) -> None:
    created = post_automation(make_driver(api_key=SecretStr(API_KEY)), STEPS)
    assert created.status_code == 201, created.text


@pytest.mark.usefixtures("tag_contact")
@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"tag": ""}, "(steps[1]): config.tag: String should have at least 1 character"),
        ({"tag": "x", "colour": "red"}, "config.colour: Extra inputs are not permitted"),
        ({}, "config.tag: Field required"),
    ],
)
def test_the_api_refuses_a_bad_config(
    make_driver: MakeDriver, config: dict[str, Any], named: str
) -> None:
    refused = post_automation(
        make_driver(api_key=SecretStr(API_KEY)),
        [STEPS[0], {"key": "tag", "type": "tag_contact", "config": config}],
    )
    assert refused.status_code == 422, refused.text
    assert named in refused.json()["message"]


@pytest.mark.usefixtures("tag_contact")
def test_the_dashboard_graph_labels_it() -> None:
    graph = validate_graph(STEPS, CONNECTIONS)
    svg = render(graph, {}, title="toy")
    assert "tag contact · tag vip" in svg


def test_unregistered_it_is_gone(tag_contact: StepTypeSpec) -> None:
    assert find("tag_contact") is tag_contact
    unregister("tag_contact")
    try:
        assert find("tag_contact") is None
        assert "tag_contact" not in {spec.name for spec in all_specs()}
        with pytest.raises(Exception, match="unknown step type 'tag_contact'"):
            validate_graph(STEPS, CONNECTIONS)
    finally:
        register(tag_contact)  # the fixture unregisters it


def test_a_taken_name_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(StepTypeSpec(**{**TAG_CONTACT.__dict__, "name": "delay"}))
    with pytest.raises(ValueError, match="already registered"):
        register(StepTypeSpec(**{**TAG_CONTACT.__dict__, "name": "update_contact"}))


def test_it_gets_its_celery_task(tag_contact: StepTypeSpec, driver: Driver) -> None:
    app = create_celery_app(driver.rt.settings, runtime=driver.rt)
    assert "automations.steps.tag_contact" in app.tasks
