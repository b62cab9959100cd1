"""The scoring engine: Kafka adapter, batch handler, repository, score relay, retention."""
