"""The routes that describe the API: the OpenAPI document and the page's input limits.

The document is built on first request (api/openapi.py is imported then, not at start): most
nodes never serve it, and an idle node should not hold it in memory.
"""

from __future__ import annotations

from aiohttp import web

from .app import json_response
from .fields import page_limits

__all__ = ["routes", "OPENAPI_PATH", "FIELDS_PATH"]

routes = web.RouteTableDef()
OPENAPI_PATH = "/lanqueue/openapi.json"
FIELDS_PATH = "/lanqueue/fields"


@routes.get(OPENAPI_PATH)
async def openapi_json(request: web.Request) -> web.Response:
    from .openapi import document

    return json_response(document())


@routes.get(FIELDS_PATH)
async def fields_json(request: web.Request) -> web.Response:
    return json_response({"inputs": page_limits()})
