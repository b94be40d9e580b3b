"""The step types, each declared once as a spec that validation, execution, the dashboard's graph
and the Celery tasks all read. A new step type is one module in engine/steps/ and one line in
BUILTIN_MODULES (or a `register` call, for one that lives elsewhere)."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from engine.errors import InvalidInput
from models.enums import ConnectionType

if TYPE_CHECKING:
    import datetime as dt

    from sqlalchemy.orm import Session

    from engine.outcomes import Outcome
    from engine.progress import StepRef
    from engine.runtime import Runtime
    from engine.steps.context import StepRun
    from engine.store.claims import Along
    from engine.store.core import Carried

# The built-in step types, in the order error messages list them. Each module holds a `SPEC`.
BUILTIN_MODULES = (
    "engine.steps.trigger",
    "engine.steps.send_email",
    "engine.steps.delay",
    "engine.steps.condition",
    "engine.steps.wait_for_event",
    "engine.steps.contact_update",
    "engine.steps.contact_delete",
    "engine.steps.add_to_segment",
)
# run_steps.step_type is a String(20).
MAX_NAME_LENGTH = 20
DEFAULT_ONLY = frozenset({ConnectionType.DEFAULT})

# The config of a step, validated and normalised; `at` prefixes the fields errors name.
ConfigCheck = Callable[[dict[str, Any], str], dict[str, Any]]
Handler = Callable[["StepRun"], "Outcome"]
Prepared = TypeVar("Prepared")


@dataclass(frozen=True)
class Delivery(Generic[Prepared]):
    """A step whose side effect leaves the database, in three phases.

    `prepare` runs in the claim transaction and returns an outcome (nothing to send) or what to
    send, written durably first; `deliver` runs with no transaction open and returns its result;
    `record` writes that result in a new transaction and returns the step's outcome, or None
    when the worker no longer owns the step (`owned` is False) and there is nothing to decide;
    and a write it leaves to the caller, who makes it in that transaction before anything
    else, alone or carried by the statement that records the outcome (progress.record_outcome).
    `abandon` runs in the claim transaction of a step skipped before `prepare` (its contact was
    deleted): it settles what an earlier try left and returns the step's output.
    """

    prepare: Callable[[StepRun], Outcome | Prepared]
    deliver: Callable[[Runtime, Prepared], object]
    record: Callable[
        [Session, Runtime, StepRef, Prepared, object, bool, dt.datetime],
        tuple[Outcome | None, Carried | None],
    ]
    abandon: Callable[[Session, StepRef], dict[str, Any]] | None = None


def _no_summary(config: Mapping[str, Any]) -> str:
    return ""


@dataclass(frozen=True)
class StepTypeSpec:
    """Everything the runtime knows about one step type."""

    name: str
    check_config: ConfigCheck
    # The branches that may leave a step of this type.
    connection_types: frozenset[ConnectionType]
    # How the dashboard's graph names the type, and a short summary of a config.
    label: str
    # Database work only: a worker may execute it inline, right after the step that made it
    # ready, instead of sending a message for it (AUTOMATIONS_INLINE_STEPS).
    instant: bool
    # Exactly one of the two: a handler runs inside the claim transaction.
    handler: Handler | None = None
    delivery: Delivery[Any] | None = None
    summary: Callable[[Mapping[str, Any]], str] = _no_summary
    # Other names accepted on input, stored under `name`.
    aliases: tuple[str, ...] = ()
    # Without it, a step given no "config" gets {}.
    config_required: bool = True
    # A completed step of this type deletes the run's contact: the rest of the run is skipped.
    deletes_contact: bool = False
    # It locks or writes the run's contact: the executor locks the contact before the step's
    # claim, so that the contact comes first in every transaction (see docs/durability.md).
    locks_contact: bool = False
    # The read a step of this type makes first in its claim transaction, from its config, for
    # the claim's statement to make on PostgreSQL when the message names the run's version
    # (the executor hands the result to the step as StepRun.claim_read). Not for a type that
    # locks its contact, whose claim locks the contact first.
    reads_on_claim: Callable[[Mapping[str, Any]], Along[Any]] | None = None

    def __post_init__(self) -> None:
        if (self.handler is None) == (self.delivery is None):
            raise ValueError(f"step type {self.name!r}: give a handler or a delivery, not both")
        if self.instant and self.delivery is not None:
            raise ValueError(f"step type {self.name!r}: a delivery is never instant")
        if not self.connection_types:
            raise ValueError(f"step type {self.name!r}: no connection type may leave it")
        if self.reads_on_claim is not None and self.locks_contact:
            raise ValueError(
                f"step type {self.name!r}: a claim that locks its contact reads nothing more"
            )

    @property
    def branching(self) -> bool:
        """Whether a step of this type chooses among branches (so others may go untaken)."""
        return len(self.connection_types) > 1


class _Registry:
    """The specs by name and alias; the built-ins are loaded on first use, because their
    modules import the graph, which reads this registry."""

    def __init__(self) -> None:
        self._specs: dict[str, StepTypeSpec] = {}
        self._names: dict[str, str] = {}
        self._loaded = False
        self._lock = threading.RLock()

    def specs(self) -> dict[str, StepTypeSpec]:
        with self._lock:
            if not self._loaded:
                self._loaded = True
                for module in BUILTIN_MODULES:
                    self.add(importlib.import_module(module).SPEC)
            return self._specs

    def names(self) -> dict[str, str]:
        self.specs()
        return self._names

    def add(self, spec: StepTypeSpec) -> None:
        with self._lock:
            for name in (spec.name, *spec.aliases):
                if name in self._names:
                    raise ValueError(f"step type {name!r} is already registered")
                if not name or len(name) > MAX_NAME_LENGTH:
                    raise ValueError(f"step type {name!r}: 1 to {MAX_NAME_LENGTH} characters")
            self._specs[spec.name] = spec
            self._names.update(dict.fromkeys((spec.name, *spec.aliases), spec.name))

    def remove(self, name: str) -> None:
        with self._lock:
            spec = self._specs.pop(name)
            for alias in (spec.name, *spec.aliases):
                del self._names[alias]


_REGISTRY = _Registry()


def register(spec: StepTypeSpec) -> StepTypeSpec:
    """Add a step type; ValueError if its name or an alias is taken."""
    _REGISTRY.specs()
    _REGISTRY.add(spec)
    return spec


def unregister(name: str) -> None:
    """Remove a step type added with `register`."""
    _REGISTRY.specs()
    _REGISTRY.remove(name)


def find(name: str) -> StepTypeSpec | None:
    """The spec of a type, by its name or an alias; None if there is none."""
    canonical = _REGISTRY.names().get(name)
    return None if canonical is None else _REGISTRY.specs()[canonical]


def spec_for(name: str) -> StepTypeSpec:
    """The spec of a type, by its name or an alias; KeyError if there is none."""
    spec = find(name)
    if spec is None:
        raise KeyError(f"unknown step type {name!r}")
    return spec


def all_specs() -> tuple[StepTypeSpec, ...]:
    """Every registered step type, the built-ins first."""
    return tuple(_REGISTRY.specs().values())


def is_instant(name: str) -> bool:
    """Whether a step of this type only touches the database (see StepTypeSpec.instant)."""
    spec = find(name)
    return spec is not None and spec.instant


def contact_lockers() -> frozenset[str]:
    """The step types whose execution locks the run's contact (StepTypeSpec.locks_contact)."""
    return frozenset(spec.name for spec in _REGISTRY.specs().values() if spec.locks_contact)


def reads_on_claim(name: str) -> bool:
    """Whether a step of this type has its claim read for it (StepTypeSpec.reads_on_claim)."""
    spec = find(name)
    return spec is not None and spec.reads_on_claim is not None


def locks_contact(name: str) -> bool:
    spec = find(name)
    return spec is not None and spec.locks_contact


def config_model(model: type[BaseModel]) -> ConfigCheck:
    """A config check from a pydantic model: the first error as InvalidInput naming the field.

    Give the model `extra="forbid"` to refuse unknown keys, as the built-in types do.
    """

    def check(config: dict[str, Any], at: str) -> dict[str, Any]:
        try:
            return model.model_validate(config).model_dump(mode="json")
        except ValidationError as error:
            first = error.errors()[0]
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
            raise InvalidInput(f"config{path}: {first['msg']}", field=at + path) from None

    return check
