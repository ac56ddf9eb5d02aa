"""The OpenAPI document of the node's HTTP surface, served at /lanqueue/openapi.json."""

from __future__ import annotations

from aiohttp import web

__all__ = ["routes"]

routes = web.RouteTableDef()
