"""The embedded Postgres never widens a directory's permissions, keeps its socket in a private
directory whatever the data path's length, and lets no other local user in (peer auth only)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import asyncpg
import pytest
from structlog.testing import capture_logs

from engine.db.embedded import BIN, SYSTEM_USER, EmbeddedPostgres, EmbeddedPostgresError

ROOT = Path(__file__).resolve().parents[2]
AS_ROOT = os.geteuid() == 0


@pytest.fixture
def base() -> Iterator[Path]:
    path = ROOT / ".jobengine" / f"safety-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _modes(path: Path) -> dict[Path, int]:
    return {p: stat.S_IMODE(p.stat().st_mode) for p in [path, *path.parents]}


def _socket_dir(url: str) -> Path:
    return Path(parse_qs(urlsplit(url).query)["host"][0])


async def test_parent_permissions_are_never_widened(base: Path) -> None:
    private = base / "private"
    private.mkdir(mode=0o700)
    before = _modes(private)
    pg = EmbeddedPostgres(private / "pgdata")
    if AS_ROOT:  # the server's user cannot reach a 0700 root directory: refused, not opened up
        with pytest.raises(EmbeddedPostgresError, match=rf"{SYSTEM_USER} .*cannot reach {private} \(mode 700\)"):
            await pg.start()
    else:
        await pg.start()
        await pg.stop()
    assert _modes(private) == before


async def test_a_long_data_path_keeps_its_socket_private_and_strangers_out(base: Path) -> None:
    data_dir = base / ("d" * 90) / "pgdata"
    assert len(str(data_dir)) > 93
    pg = EmbeddedPostgres(data_dir)
    url = await pg.start()
    try:
        socket_dir = _socket_dir(url)
        info = socket_dir.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700, "no one else may even reach the socket"
        owner = SYSTEM_USER if AS_ROOT else pwd.getpwuid(os.getuid()).pw_name
        assert pwd.getpwuid(info.st_uid).pw_name == owner
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT current_user") == "postgres"
        finally:
            await conn.close()
        hba = (data_dir / "pg_hba.conf").read_text()
        assert "trust" not in hba and "host" not in hba.replace("# Written", "")
        if AS_ROOT:  # the attack that worked before: another local user connecting as superuser
            done = await anyio.run_process([str(BIN / "psql"), "-h", str(socket_dir), "-U", "postgres", "-c",
                                            "COPY (SELECT 1) TO PROGRAM 'id'"], user="nobody", cwd="/", check=False)
            assert done.returncode != 0
    finally:
        await pg.stop()
    assert not (data_dir / "postmaster.pid").exists()
    assert not socket_dir.exists() or socket_dir == data_dir


async def test_a_second_process_attaches_and_the_last_one_stops_the_server(base: Path) -> None:
    data_dir = base / "pgdata"
    first = EmbeddedPostgres(data_dir)
    url = await first.start()
    handles = data_dir / ".jobengine_handles.json"
    handles.write_text(handles.read_text().replace("]", f", {os.getppid()}]"))  # a live stand-in for a second CLI
    await first.stop()
    assert (data_dir / "postmaster.pid").exists(), "another process still uses it"
    again = EmbeddedPostgres(data_dir)
    with capture_logs() as logs:
        assert await again.start() == url
    assert [entry["event"] for entry in logs] == ["attached to the running embedded Postgres"]
    handles.write_text(f"[{os.getpid()}]")
    await again.stop()
    assert not (data_dir / "postmaster.pid").exists()
