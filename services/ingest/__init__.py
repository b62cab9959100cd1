"""services.ingest package."""
