"""Errors the engine raises to its callers."""

from __future__ import annotations


class EnqueueError(ValueError):
    """A job was refused at enqueue; nothing was inserted. The message names the problem."""
