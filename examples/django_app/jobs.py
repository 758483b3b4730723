"""The process's jobengine client, opened on first use from ``settings.JOBENGINE`` (after the
server has forked its workers, as a client's loop thread must be)."""

from __future__ import annotations

import atexit
import json
import threading

from django.conf import settings

from engine import Client
from engine.core.config import build_config

_lock = threading.Lock()
_clients: dict[str, Client] = {}


def client() -> Client:
    """The open client for the current ``settings.JOBENGINE``."""
    key = json.dumps(settings.JOBENGINE, sort_keys=True)
    with _lock:
        if key not in _clients:
            config = build_config({**settings.JOBENGINE, "dashboard": {"enabled": False}})
            _clients[key] = Client(config=config).open()
        return _clients[key]


@atexit.register
def close_all() -> None:
    """Close every client (at exit, and between tests)."""
    with _lock:
        for opened in _clients.values():
            opened.close()
        _clients.clear()
