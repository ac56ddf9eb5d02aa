"""How a node asks another node of the same etcd queue for a file: the route and its signature.

Declared apart from the queue so the route can be served (and the node started) without loading
the queue and its etcd client, which only a node that joins an etcd queue needs.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["FILE_ROUTE", "SIGNATURE_HEADER", "file_signature"]

FILE_ROUTE = "/lanqueue/peer/v1/etcd-files/{queue}/{digest}"  # public: signed with the queue's file secret
SIGNATURE_HEADER = "X-Lanqueue-Etcd-Signature"


def file_signature(secret: bytes, queue: str, digest: str) -> str:
    """What a node shows to fetch a file by digest from another node of the same etcd queue."""
    return hmac.new(secret, f"lanqueue-etcd-file\n{queue}\n{digest}".encode(), hashlib.sha256).hexdigest()
