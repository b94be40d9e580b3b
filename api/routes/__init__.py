"""Route modules, one per resource; thin: parse, call the engine, answer."""

from api.routes import (
    api_keys,
    automations,
    contacts,
    domains,
    event_definitions,
    events,
    public,
    recovery,
    runs,
    segments,
    simulation,
    templates,
)

# Order matters where paths overlap: `/events/send` before `/events/{id}`, and
# `/automations/simulate` before `/automations/{id}`.
ROUTERS = [
    public.router,
    events.router,
    event_definitions.router,
    simulation.router,
    automations.router,
    # Before runs: `/runs/retry` and `/runs/retries/{id}` are not run ids.
    recovery.router,
    runs.router,
    contacts.router,
    segments.router,
    templates.router,
    domains.router,
    api_keys.router,
]
