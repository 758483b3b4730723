"""The pure core: jobs, acks, outcomes, config, documents, templating, conditions,
secrets, the handler registry. Nothing here does I/O or imports another layer
(see docs/architecture.md)."""
