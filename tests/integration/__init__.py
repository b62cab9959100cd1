"""tests.integration package."""
