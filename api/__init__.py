"""The HTTP adapter: Resend's wire format over the engine."""
