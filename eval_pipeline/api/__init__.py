"""The HTTP API: a thin front door over the core (issue 5)."""
