"""Developer tooling, not shipped with the service: the local Kafka launcher, `make run` and its demo."""
