"""Errors the engine raises to its callers."""

from __future__ import annotations


class EnqueueError(ValueError):
    """A job was refused at enqueue; nothing was inserted. The message names the problem."""


class JobStillStopping(RuntimeError):
    """A cancelled job's handler may still run on its node: retry, run-now and delete wait
    until that node confirms it stopped (or is declared dead), or a second copy could start
    beside the first. The message names the job and the node."""

    def __init__(self, job_id: int, node: str) -> None:
        super().__init__(f"job {job_id} is cancelling: its handler may still run on node {node}; "
                         "try again once that node has stopped it")
        self.job_id = job_id
        self.node = node


class DatabaseUnavailable(RuntimeError):
    """An insert-only client or a CLI command could not connect within its bound; the
    message says why (refused, and by what, or unreachable)."""
