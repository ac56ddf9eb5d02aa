"""The one HTTP route etcd queues add to a node: files by digest for the other nodes of a queue.

A request shows an HMAC of (queue, digest) under the queue's file secret, which lives in etcd
and is readable only with etcd's credentials; the content is checked against its digest by the
fetching node, so the answer itself needs no signature. Only files the store records by digest
are served: a request can never reach outside the file store.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from .signing import FILE_ROUTE, SIGNATURE_HEADER, file_signature

if TYPE_CHECKING:  # the queue (and its etcd client) is loaded only by a node that joins one
    from .queue import EtcdQueue

__all__ = ["file_routes"]


def file_routes(lookup: Callable[[str], EtcdQueue | None]) -> web.RouteTableDef:
    """Routes that find a joined etcd queue by name with `lookup`."""
    routes = web.RouteTableDef()

    @routes.get(FILE_ROUTE)
    async def etcd_file(request: web.Request) -> web.StreamResponse:
        queue = lookup(request.match_info["queue"])
        digest = request.match_info["digest"]
        shown = request.headers.get(SIGNATURE_HEADER, "")
        if queue is None or not queue.file_secret() or not hmac.compare_digest(
                file_signature(queue.file_secret(), queue.name, digest).encode(), shown.encode("utf-8", "replace")):
            return web.json_response({"error": "not signed for a queue this node shares"}, status=403)
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            return web.json_response({"error": "bad digest"}, status=400)
        path = await queue.ctx.store.file_by_digest(digest)
        if path is None or not queue.ctx.files.exists(path):
            return web.json_response({"error": "no such file here"}, status=404)
        return web.FileResponse(queue.ctx.files.resolve(path))

    return routes
