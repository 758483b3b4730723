"""Per-job Python work of the hot path, without Postgres: build insert rows and their column
arrays, then run and ack each job through the real executor (no-op handler)."""
import asyncio
from datetime import UTC, datetime

from engine.core.config import build_config
from engine.core.context import Resources
from engine.core.events import Events
from engine.core.job import Job, JobSpec
from engine.core.registry import Registry
from engine.core.secrets import Secrets
from engine.insert.followups import Followups
from engine.insert.inserter import Inserter
from engine.queues.executor import Executor

try:
    from engine.db.rows import insert_columns
except ImportError:
    from engine.db.store import _insert_columns as insert_columns
N = 3000
reg = Registry()
@reg.handler("noop")
async def noop(job): return None
cfg = build_config({})
ins = Inserter(reg, Secrets({}))
ex = Executor(registry=reg, resources=Resources(cfg), secrets=Secrets({}), followups=Followups(ins, cfg),
              events=Events())
specs = [JobSpec(kind="noop", args={"i": i}) for i in range(N)]
rows = ins.rows(specs)
cols = insert_columns(rows)
now = datetime.now(UTC)
jobs = [Job(id=i, queue="default", kind="noop", args={"i": i}, attempt=1, attempted_at=now, scheduled_at=now)
        for i in range(N)]
async def main():
    for job in jobs:
        await ex.execute(job)
asyncio.run(main())
