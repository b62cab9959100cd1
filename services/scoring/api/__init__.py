"""Scoring's HTTP layer: request dependencies, scoping, errors, one router per resource."""
