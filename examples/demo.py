"""Demo handlers for the example config: enough to watch jobs flow on a fresh machine.

``jobengine start`` imports this module (config ``modules``); its cron entries enqueue
``demo.tick`` jobs, some of which fail and retry so every state shows up.
"""

from __future__ import annotations

import random

import anyio

from engine import Job, handler
from engine.core.context import HandlerContext


@handler("demo.tick", queue="default", max_attempts=3)
async def tick(job: Job, ctx: HandlerContext) -> dict[str, object]:
    """Sleep a little, fail one time in five (to show retries), return a result."""
    await anyio.sleep(random.uniform(0.05, 0.5))
    if random.random() < 0.2:
        raise RuntimeError("demo failure: retried with backoff")
    ctx.logger.info("demo tick done", n=job.args.get("n"), attempt=job.attempt)
    return {"tick": job.args.get("n"), "attempt": job.attempt}
