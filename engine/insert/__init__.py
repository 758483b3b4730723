"""Turning insert requests into rows: validation, unique keys, dependencies and the
follow-up jobs (onSuccess, onFailure, failure notifications) an ack carries."""
