"""A plain aiohttp app with jobengine: the engine lives in the app's ``cleanup_ctx``, and an order
and its receipt job are written in one transaction on the app's own asyncpg pool.

Run it::

    JOBENGINE_DATABASE_URL=postgresql://... python -m aiohttp.web -H 127.0.0.1 -P 8000 \\
        examples.aiohttp_app:create_app

``POST /orders`` with ``{"email": "..."}`` stores the order and enqueues its receipt; with
``"fail": true`` the transaction rolls back after the enqueue, and no job exists. The dashboard
runs beside the app (``engine.web.serve``) on its own port.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiohttp import web

from engine import Engine, Job, handler
from engine.core.config import Config
from engine.db.sql import quote_ident

ENGINE = web.AppKey("engine", Engine)
POOL = web.AppKey("pool", asyncpg.Pool)
ORDERS = web.AppKey("orders", str)


@handler("example.receipt", queue="default", max_attempts=5)
async def receipt(job: Job) -> dict[str, str]:
    """Stands in for a receipt mail (the built-in ``mail`` kind would send a real one)."""
    return {"receipt_for": job.args["order_id"]}


class OrderFailed(Exception):
    """The order could not be completed: its transaction rolls back, job included."""


def create_app(argv: list[str] | None = None, *, config: Config | str | None = None) -> web.Application:
    """The example app (``argv`` is what ``python -m aiohttp.web`` passes)."""
    app = web.Application()

    async def jobengine(app: web.Application) -> AsyncIterator[None]:
        async with Engine(config=config) as engine:
            assert engine.database_url is not None
            pool = await asyncpg.create_pool(engine.database_url, min_size=1, max_size=4)
            try:
                table = f"{quote_ident(engine.config.schema_name)}.example_orders"
                await pool.execute(f"CREATE TABLE IF NOT EXISTS {table} (id uuid PRIMARY KEY, email text NOT NULL)")
                app[ENGINE], app[POOL], app[ORDERS] = engine, pool, table
                yield
            finally:
                await pool.close()

    app.cleanup_ctx.append(jobengine)
    app.router.add_post("/orders", place_order)
    return app


async def place_order(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    order_id = str(uuid.uuid4())
    try:
        async with request.app[POOL].acquire() as conn, conn.transaction():
            insert = f"INSERT INTO {request.app[ORDERS]} (id, email) VALUES ($1, $2)"
            await conn.execute(insert, order_id, body["email"])
            job = await request.app[ENGINE].enqueue("example.receipt", {"order_id": order_id}, conn=conn)
            if body.get("fail"):
                raise OrderFailed("payment declined")
    except OrderFailed as exc:
        return web.json_response({"error": str(exc), "order_id": order_id, "job_id": job.id}, status=402)
    return web.json_response({"order_id": order_id, "job_id": job.id})
