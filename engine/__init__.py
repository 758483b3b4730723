"""jobengine: an asyncio job engine on Postgres, in the style of Oban.

Example::

    from engine import Engine, handler

    @handler("greet")
    async def greet(job):
        return {"greeting": f"hello {job.args['name']}"}

    async with Engine() as engine:
        await engine.enqueue("greet", {"name": "world"})
"""

from engine.config import Config, ConfigError, load_config
from engine.engine import Engine
from engine.inserter import EnqueueError
from engine.job import Job, JobSpec, JobState, UniqueSpec
from engine.outcomes import Cancel, Discard, PermanentError, RetryAfter, Snooze
from engine.registry import Registry, handler

__all__ = [
    "Cancel",
    "Config",
    "ConfigError",
    "Discard",
    "Engine",
    "EnqueueError",
    "Job",
    "JobSpec",
    "JobState",
    "PermanentError",
    "Registry",
    "RetryAfter",
    "Snooze",
    "UniqueSpec",
    "handler",
    "load_config",
]
