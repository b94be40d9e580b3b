"""The runtime: graph validation, step semantics, scheduling decisions and the store."""
