"""The semantics of each step type: given stored state and `now`, decide an outcome."""
