"""Tables and enums. Importing this package does no I/O."""
