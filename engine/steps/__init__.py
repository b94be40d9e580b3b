"""The step types, one module each: its config check, its semantics (given stored state and
`now`, decide an outcome) and its `SPEC`, which engine/step_types.py loads."""
