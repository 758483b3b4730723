"""jobengine: an asyncio job engine on Postgres, in the style of Oban.

Example::

    from engine import Engine, handler

    @handler("greet")
    async def greet(job):
        return {"greeting": f"hello {job.args['name']}"}

    async with Engine() as engine:
        await engine.enqueue("greet", {"name": "world"})
"""

from engine.client import Client
from engine.core.config import Config, ConfigError, load_config
from engine.core.errors import DatabaseUnavailable, EnqueueError, JobStillStopping, UniqueKeyHeld
from engine.core.job import Job, JobSpec, JobState, UniqueSpec
from engine.core.outcomes import Cancel, Discard, PermanentError, RetryAfter, Snooze
from engine.core.registry import Registry, handler
from engine.engine import Engine

__all__ = [
    "Cancel",
    "Client",
    "Config",
    "ConfigError",
    "DatabaseUnavailable",
    "Discard",
    "Engine",
    "EnqueueError",
    "Job",
    "JobSpec",
    "JobState",
    "JobStillStopping",
    "PermanentError",
    "Registry",
    "RetryAfter",
    "Snooze",
    "UniqueKeyHeld",
    "UniqueSpec",
    "handler",
    "load_config",
]
