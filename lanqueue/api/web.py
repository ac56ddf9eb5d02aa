"""The web page (static files under lanqueue/web/) and its live updates."""

from __future__ import annotations

from aiohttp import web

__all__ = ["routes"]

routes = web.RouteTableDef()
