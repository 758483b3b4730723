"""Settings of the Django example: Postgres on psycopg 3 from ``DATABASE_URL``, and the
jobengine client's settings in ``JOBENGINE`` (any jobengine config key)."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_url = urlsplit(DATABASE_URL)
# libpq's own spelling of a Unix-socket server: postgresql://user@/db?host=/run/postgresql
_socket_dir = parse_qs(_url.query).get("host", [None])[0]

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-set-DJANGO_SECRET_KEY")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
INSTALLED_APPS = ["examples.django_app"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware", "django.middleware.csrf.CsrfViewMiddleware"]
ROOT_URLCONF = "examples.django_app.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3 when installed
        "NAME": _url.path.lstrip("/") or "postgres",
        "USER": unquote(_url.username or "postgres"),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _socket_dir or _url.hostname or "127.0.0.1",
        "PORT": str(parse_qs(_url.query).get("port", [_url.port or 5432])[0]),
    }
}
# The same database: a job and the rows of its request commit together.
JOBENGINE = {"database_url": DATABASE_URL, "schema": os.environ.get("JOBENGINE_SCHEMA", "jobengine")}
