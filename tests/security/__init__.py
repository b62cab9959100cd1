"""Security tests: authorization matrix, API fuzzing, input limits, secrets."""
