"""Typed keys for the services the node puts into the aiohttp application.

Route modules read services through these keys (`request.app[PRINTER]`), never through module
globals, so a test can build an application around any set of real services.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:  # imported for the type checker only: api/ must not import node wiring
    from ..node import Node

__all__ = ["NODE"]

NODE: web.AppKey["Node"] = web.AppKey("node")
