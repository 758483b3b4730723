"""``python -m tests.support.pgcheck URL DBNAME``: exit 0 after (re)creating DBNAME when a
Postgres answers at URL within 3 s, else exit 1. Used by scripts/test for the second server."""

from __future__ import annotations

import asyncio
import sys

import asyncpg


async def main(url: str, database: str) -> int:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return 1
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{database}"')
        version = await conn.fetchval("SHOW server_version")
        print(f"second Postgres server: {version}")
        return 0
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
