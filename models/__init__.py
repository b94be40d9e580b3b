"""Tables, enums and schemas. Importing this package does no I/O."""
