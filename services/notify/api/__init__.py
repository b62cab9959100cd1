"""HTTP routes of notify, one module per resource; `deps` holds what they share."""
