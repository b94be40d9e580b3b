"""Whether a server command can listen where it was asked to, said before it starts."""

from __future__ import annotations

import socket

from cli.failures import ExitCode, fail


def port_taken(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on (e.g. `address already in use`), or None if it can.

    A host that does not resolve is not a taken port: bad input, said before any --port hint."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"--host {host}: unknown host ({exc.strerror})", ExitCode.BAD_INPUT)
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # The same option uvicorn sets: a port left in TIME_WAIT by a stopped server is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return (exc.strerror or str(exc)).lower()
    return None


def require_free_port(host: str, port: int, *, client_hint: bool = False) -> None:
    """Leave with one line (ExitCode.PORT_IN_USE) suggesting --port when `host:port` is taken."""
    reason = port_taken(host, port)
    if reason is None:
        return
    hint = f"pass --port with another one (--port {port + 1}, or --port 0 for any free port)"
    if client_hint:
        hint += ", and point the client commands at it with AUTOMATIONS_API_URL"
    fail(f"cannot listen on {host}:{port}: {reason}; {hint}", ExitCode.PORT_IN_USE)
