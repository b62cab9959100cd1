"""Notify use-cases, one module per flow; each runs inside the caller's transaction."""
