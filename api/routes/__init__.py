"""Route modules, one per resource; thin: parse, call the engine, answer."""

from api.routes import api_keys, events, public

# Order matters where paths overlap: `/events/send` before `/events/{id}`.
ROUTERS = [public.router, events.router, api_keys.router]
