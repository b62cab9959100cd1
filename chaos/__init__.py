"""Chaos harness: the whole platform under a generated stream and scheduled faults."""
