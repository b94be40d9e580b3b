"""Pydantic shapes of the HTTP API, one module per resource: request bodies and answers."""
