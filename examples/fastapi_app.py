"""FastAPI with jobengine: the lifespan starts the engine, a route enqueues, and the dashboard
is mounted under ``/ops/jobs`` behind the app's own auth.

Run it::

    pip install "jobengine" fastapi uvicorn
    JOBENGINE_DATABASE_URL=postgresql://... APP_PASSWORD=s3cret \
        uvicorn --factory examples.fastapi_app:create_app

- The engine processes the queues of its config (``config=``, ``JOBENGINE_*``); with no
  ``[queues]`` it only inserts, and separate ``jobengine start`` workers run the jobs.
- With OpenTelemetry set up (``opentelemetry-instrument`` or your own provider, with the FastAPI
  and aiohttp-client instrumentations), one trace shows the request, the enqueues, the jobs' runs
  and the CRM webhook call the ``http`` job makes.
- The dashboard is jobengine's aiohttp app, served on a private loopback port and reached through
  ``/ops/jobs/...`` here: the app checks its own users (HTTP Basic in this example), then forwards
  with the dashboard's operator token, rewriting the dashboard's absolute links under the prefix.
  The dashboard token never leaves the server.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import aiohttp
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel

from engine import Engine, Job, handler
from engine.core.config import Config, DashboardConfig
from engine.web import serve

PREFIX = "/ops/jobs"
BASIC = HTTPBasic()  # module level: FastAPI resolves the annotations in the module's namespace
# Attributes holding the dashboard's absolute paths (links, forms, assets, live regions).
_ABSOLUTE = re.compile(r'\b(href|action|src|data-live)="/(?!/)')
# Response headers of the dashboard passed on to the browser (its CSP keeps applying).
_PASSED = ("Content-Type", "Content-Security-Policy", "Cache-Control", "X-Content-Type-Options",
           "X-Frame-Options", "Referrer-Policy")


@handler("example.welcome", queue="default", max_attempts=5)
async def welcome(job: Job) -> dict[str, str]:
    """Stands in for a welcome mail (the built-in ``mail`` kind would send a real one)."""
    return {"welcomed": job.args["email"]}


class Signup(BaseModel):
    email: str


def create_app(config: Config | str | None = None, *, password: str | None = None,
               crm_webhook: str | None = None) -> FastAPI:
    """The example app; ``password`` guards the dashboard (user ``admin``); each signup is also
    posted to ``crm_webhook`` by a built-in ``http`` job when one is set."""
    password = password or os.environ.get("APP_PASSWORD") or secrets.token_urlsafe(16)
    crm_webhook = crm_webhook or os.environ.get("CRM_WEBHOOK")
    dashboard_token = secrets.token_urlsafe(32)  # only this process knows it

    def operator(credentials: Annotated[HTTPBasicCredentials, Depends(BASIC)]) -> str:
        """The app's own auth in front of the dashboard."""
        user_ok = secrets.compare_digest(credentials.username, "admin")
        if not (user_ok and secrets.compare_digest(credentials.password, password)):
            raise HTTPException(401, "unknown user or wrong password", headers={"WWW-Authenticate": "Basic"})
        return credentials.username

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Engine(config=config) as engine, \
                serve(engine, bind="127.0.0.1:0", settings=DashboardConfig(token=dashboard_token)) as dashboard, \
                aiohttp.ClientSession() as http:
            app.state.engine, app.state.dashboard_url, app.state.http = engine, dashboard.url, http
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/signup")
    async def signup(body: Signup, request: Request) -> dict[str, Any]:
        engine = request.app.state.engine
        job = await engine.enqueue("example.welcome", {"email": body.email})
        crm = None
        if crm_webhook:
            crm = await engine.enqueue("http", {"method": "POST", "url": crm_webhook, "body": {"signup": body.email}})
        return {"job_id": job.id, "state": job.state, "crm_job_id": crm.id if crm else None}

    @app.api_route(PREFIX + "/{path:path}", methods=["GET", "POST"], dependencies=[Depends(operator)])
    async def dashboard(path: str, request: Request) -> Response:
        if request.method == "POST":
            _same_origin(request)
        return await _forward(request, path, dashboard_token)

    return app


async def _forward(request: Request, path: str, token: str) -> Response:
    """The dashboard's answer to this request, its absolute links moved under the prefix."""
    headers = {"Authorization": f"Bearer {token}"}
    for name in ("Content-Type", "X-Requested-With", "Accept"):
        if name in request.headers:
            headers[name] = request.headers[name]
    state = request.app.state
    async with state.http.request(request.method, f"{state.dashboard_url}/{path}",
                                  params=list(request.query_params.items()), data=await request.body(),
                                  headers=headers, allow_redirects=False) as upstream:
        content = await upstream.read()
        passed = {name: upstream.headers[name] for name in _PASSED if name in upstream.headers}
        if "Location" in upstream.headers:
            passed["Location"] = _prefixed(upstream.headers["Location"])
        if upstream.content_type == "text/html":
            content = _ABSOLUTE.sub(rf'\1="{PREFIX}/', content.decode()).encode()
        return Response(content, status_code=upstream.status, headers=passed)


def _prefixed(location: str) -> str:
    return PREFIX + location if location.startswith("/") and not location.startswith("//") else location


def _same_origin(request: Request) -> None:
    """The dashboard's own CSRF defence sees a bearer request from here, so the proxy refuses
    cross-site POSTs itself (a browser names the site it posts from)."""
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if site is not None and site not in ("same-origin", "none"):
        raise HTTPException(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
        raise HTTPException(403, "cross-origin request refused")
