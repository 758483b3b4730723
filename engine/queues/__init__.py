"""The runtime of a named queue: the producer that claims, the executor that runs one
attempt, the acker that writes outcomes, shared limits, and the LISTEN notifier."""
