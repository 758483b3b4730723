"""Fixtures of the engine tests that live in tests/support."""

from tests.support.tracing import hook_peer, spans  # noqa: F401  (fixtures, found by name)
