"""Definitions on the dashboard and the API: registers the JSON routes
(:mod:`engine.web.definitions_api`) and the pages (:mod:`engine.web.definition_pages`)."""

from __future__ import annotations

from aiohttp import web

from engine.web import definition_pages, definitions_api


def add_routes(app: web.Application) -> None:
    definitions_api.add_routes(app)
    definition_pages.add_routes(app)
