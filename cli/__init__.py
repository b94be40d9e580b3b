"""The `automations` command line: servers, the embedded mode, and a client of the HTTP API."""
