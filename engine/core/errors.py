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


class UniqueKeyHeld(RuntimeError):
    """Retrying this job would give its unique key to a second live job: another job holds
    it. The message names the holder and its state."""

    def __init__(self, job_id: int, holder_id: int, holder_state: str) -> None:
        super().__init__(f"job {job_id} cannot be retried: its unique key is held by job {holder_id} "
                         f"({holder_state})")
        self.job_id = job_id
        self.holder_id = holder_id
        self.holder_state = holder_state


class DatabaseUnavailable(RuntimeError):
    """An insert-only client or a CLI command could not connect within its bound; the
    message says why (refused, and by what, or unreachable)."""


class NodeNameInUse(RuntimeError):
    """Another live process heartbeats under this node's name: two processes with one
    ``node_name`` would rescue and re-run each other's jobs, so this one refuses to run."""
