# jobengine container image: `jobengine start` as a non-root user.
#
#   docker build -t jobengine .
#   docker run --rm -e JOBENGINE_DATABASE_URL=postgresql://user:pass@db:5432/app \
#       -e JOBENGINE_QUEUES__DEFAULT__CONCURRENCY=10 jobengine
#   docker run ... -v "$PWD/config:/app/config:ro" jobengine      # config file + mail templates
#
# Configuration: /app/config/jobengine.toml when mounted, and/or JOBENGINE_... variables
# (README "Configuration from the environment"). See docs/deployment.md.
# tests/deploy/test_image.py replays the build stage's steps in a fresh virtualenv: keep every
# path the steps use in ENV/WORKDIR (the test remaps them) and the steps plain `sh`.

# python:3.11.14-slim-bookworm, pinned by digest (multi-arch index). Update tag and digest together:
#   docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# --- build: a virtualenv with jobengine and its dependencies (all from wheels) ---------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/jobengine
RUN python -m venv "$VIRTUAL_ENV"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY engine/ engine/
COPY handlers/ handlers/
COPY examples/ examples/
RUN "$VIRTUAL_ENV/bin/pip" install . \
    && "$VIRTUAL_ENV/bin/jobengine" --help > /dev/null

# --- runtime: the virtualenv only; no compiler, no source tree, no pip cache ----------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="jobengine" \
      org.opencontainers.image.description="An asyncio job engine on Postgres" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV VIRTUAL_ENV=/opt/jobengine
ENV PATH="$VIRTUAL_ENV/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    JOBENGINE_LOGGING__FORMAT=json \
    JOBENGINE_EMBEDDED_DATA_DIR=/app/data/pgdata
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin jobengine \
    && mkdir -p /app/config /app/data \
    && chown jobengine:jobengine /app/data
COPY --from=build /opt/jobengine /opt/jobengine
# The working directory is on sys.path for `modules`: extend the image with
# `COPY myapp/ /app/myapp/` and `modules = ["myapp.jobs"]` (docs/deployment.md).
WORKDIR /app
USER 10001:10001
# The dashboard, /metrics and /healthz. Bound to 127.0.0.1 unless JOBENGINE_DASHBOARD__BIND
# says otherwise (without JOBENGINE_DASHBOARD__TOKEN it stays on 127.0.0.1); the healthcheck runs inside
# the container, so it reaches a 127.0.0.1 bind too.
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('JOBENGINE_DASHBOARD__BIND', '127.0.0.1:8080').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
# Exec form: jobengine is PID 1 and receives SIGTERM itself; it stops claiming, lets
# running jobs finish for shutdown_grace (15 s) and puts the rest back. Give the container
# a longer stop timeout than shutdown_grace (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["jobengine"]
CMD ["start"]
