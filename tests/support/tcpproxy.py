"""A small asyncio TCP proxy that can black-hole traffic, to make a Postgres connection
go silent the way a dropped network path or a dead NAT entry does.

The proxy listens on 127.0.0.1 and forwards to Postgres over TCP or its Unix socket.
:meth:`TcpProxy.blackhole` stops forwarding in both directions without closing anything:
established connections stay open but silent, and new ones are accepted but never reach
the server (a client waits until its own timeout). :meth:`TcpProxy.restore` lets the held
bytes through, as TCP does once a partition heals: nothing is lost, only late.

Example::

    async with TcpProxy.for_url(pg_url) as proxy:
        engine_url = proxy.url             # same database, through the proxy
        proxy.blackhole()
        ...
        proxy.restore()
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

CHUNK = 65_536


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``upstream`` (``(host, port)`` or a Unix socket path)."""

    def __init__(self, upstream: tuple[str, int] | str, *, url: str = "") -> None:
        self.upstream = upstream
        self._template_url = url
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.accepted = 0

    @classmethod
    def for_url(cls, pg_url: str) -> TcpProxy:
        """A proxy in front of the server of ``pg_url`` (TCP, or asyncpg's ``?host=/dir``)."""
        parts = urlsplit(pg_url)
        query = parse_qs(parts.query)
        host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
        port = int(query.get("port", [parts.port or 5432])[0])
        upstream: tuple[str, int] | str = (
            str(Path(host) / f".s.PGSQL.{port}") if host.startswith("/") else (host, port))
        return cls(upstream, url=pg_url)

    @property
    def url(self) -> str:
        """The original URL, pointing at the proxy instead of the server."""
        parts = urlsplit(self._template_url)
        query = {k: v for k, v in parse_qs(parts.query).items() if k not in ("host", "port")}
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, doseq=True), ""))

    @property
    def blackholed(self) -> bool:
        return not self._open.is_set()

    def blackhole(self) -> None:
        """Stop forwarding bytes, both ways, on every connection old and new."""
        self._open.clear()

    def restore(self) -> None:
        """Forward again, held bytes first."""
        self._open.set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        server_writer: asyncio.StreamWriter | None = None
        try:
            await self._open.wait()  # black-holed: the client's connect never gets an answer
            if isinstance(self.upstream, str):
                server_reader, server_writer = await asyncio.open_unix_connection(self.upstream)
            else:
                server_reader, server_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(server_writer)
            await asyncio.gather(self._pump(client_reader, server_writer),
                                 self._pump(server_reader, client_writer))
        except OSError:
            pass
        finally:
            for writer in (client_writer, server_writer):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                await self._open.wait()
                writer.write(data)
                await writer.drain()
        # One side closed: close the other, once the path carries anything again.
        await self._open.wait()
        writer.transport.abort()
