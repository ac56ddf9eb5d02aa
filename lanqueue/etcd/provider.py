"""The node's queues kept in etcd: one client per cluster URL, one `EtcdQueue` per queue name.

Registered with the node's queue registry like any other provider, so routes, the driver and the
page use these queues without knowing where they are kept.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .client import EtcdClient
from .queue import EtcdContext, EtcdQueue

__all__ = ["EtcdCredentials", "EtcdProvider", "endpoints_of", "local_address_towards"]


@dataclass(frozen=True)
class EtcdCredentials:
    user: str | None = None
    password: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


def endpoints_of(url: str) -> list[str]:
    """`etcd://h1:2379,h2:2379` -> ["http://h1:2379", "http://h2:2379"] (etcds:// -> https)."""
    scheme, _, hosts = url.partition("://")
    http = "https" if scheme == "etcds" else "http"
    return [f"{http}://{h.strip()}" for h in hosts.strip("/").split(",") if h.strip()]


def local_address_towards(endpoint: str) -> str:
    """The address of this machine's interface that routes to `endpoint` (a connected UDP
    socket sends nothing; it only asks the kernel which source address it would use)."""
    host = urlsplit(endpoint).hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, 9))
            return str(s.getsockname()[0])
        except OSError:
            return socket.gethostname()


def _ssl_context(url: str, creds: EtcdCredentials) -> ssl.SSLContext | None:
    if not url.startswith("etcds://"):
        return None
    context = ssl.create_default_context(cafile=creds.ca)
    if creds.cert:
        context.load_cert_chain(creds.cert, creds.key)
    return context


class EtcdProvider:
    """Every etcd queue this node joined."""

    def __init__(self, specs: Mapping[str, str], ctx: EtcdContext, creds: EtcdCredentials) -> None:
        self.queues: dict[str, EtcdQueue] = {}
        for name, url in specs.items():
            # a call waits for one member at most a quarter of the lease, so failing over to the
            # next member still leaves time to renew the lease before this node stops trusting it
            client = EtcdClient(endpoints_of(url), user=creds.user, password=creds.password,
                                ssl_context=_ssl_context(url, creds), timeout=max(1.0, min(5.0, ctx.ttl / 4)))
            self.queues[name] = EtcdQueue(name, client, ctx)

    def queue(self, name: str) -> EtcdQueue | None:
        return self.queues.get(name)

    async def async_start(self) -> None:
        for q in self.queues.values():
            await q.async_start()

    async def async_close(self) -> None:
        for q in self.queues.values():
            await q.async_close()

    def lease_valid(self, name: str) -> bool:
        q = self.queues.get(name)
        return q is not None and q.lease_valid()

    def status(self) -> dict[str, Any]:
        return {name: q.status() for name, q in self.queues.items()}
