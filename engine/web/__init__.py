"""jobengine's dashboard, JSON API, /metrics and /healthz, served by aiohttp from the engine's
own event loop. Server-rendered HTML (jinja2, autoescaped), a little plain JavaScript for
live refresh, no build step and nothing fetched from a CDN.

Example::

    from engine.web import serve

    async with Engine(config="config/jobengine.toml") as engine, serve(engine) as server:
        print(server.url)                 # http://127.0.0.1:8080
        await anyio.sleep_forever()
"""

from engine.web.app import create_app
from engine.web.server import DashboardServer, listen_address, serve

__all__ = ["DashboardServer", "create_app", "listen_address", "serve"]
