"""All SQL of the runtime. Functions take a session and never commit: the caller owns the
transaction."""
