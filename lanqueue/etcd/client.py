"""A small etcd v3 client over etcd's JSON gateway (`/v3/...`), on aiohttp.

Why the JSON gateway and not a gRPC client from PyPI: every etcd v3 server (3.4 and later) serves
it on the client port; aiohttp is already the node's HTTP library, so this costs no new
dependency, no native extension to build on a Raspberry Pi and no import of grpcio (about 15 MB of
resident memory, against a node budget of 45 MB). The asyncio gRPC clients on PyPI are either
unmaintained (aioetcd3, etcd3 with an asyncio fork) or young (aetcd), and lanqueue uses five calls:
range, txn, lease grant/keep-alive/revoke, watch and authenticate. Those are below.

Keys and values are bytes on the wire (base64 in the JSON); int64 fields arrive as strings.
Several endpoints may be given: a call that cannot reach one tries the next, so losing one member
of a three-member cluster costs one failed connection, not an outage.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .txn import Compare, Delete, Put, Range, b64, prefix_end

__all__ = [
    "Compare",
    "Delete",
    "EtcdClient",
    "EtcdError",
    "EtcdUnavailable",
    "KeyValue",
    "Put",
    "Range",
    "TxnResult",
    "WatchEvent",
    "prefix_end",
]


class EtcdError(Exception):
    """etcd answered with an error (a bad request, a lost lease, refused credentials)."""


class EtcdUnavailable(EtcdError):
    """No endpoint answered: the cluster is unreachable from this node (or has no leader)."""


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @classmethod
    def from_json(cls, kv: dict[str, Any]) -> KeyValue:
        return cls(
            key=_unb64(kv.get("key")),
            value=_unb64(kv.get("value")),
            create_revision=int(kv.get("create_revision", 0)),
            mod_revision=int(kv.get("mod_revision", 0)),
            version=int(kv.get("version", 0)),
            lease=int(kv.get("lease", 0)),
        )


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    ranges: list[list[KeyValue]] = field(default_factory=list)


@dataclass(frozen=True)
class WatchEvent:
    kind: str  # "PUT" or "DELETE"
    kv: KeyValue


class EtcdClient:
    """One node's connection to an etcd cluster; safe to share between tasks."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        user: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = list(endpoints)
        self._user = user
        self._password = password
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 2.0))
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._preferred = 0
        #: the endpoint the current watch stream is connected to (None: no stream)
        self.watching: str | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def async_close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the calls ----------------------------------------------------------------------

    async def range(self, key: bytes, range_end: bytes = b"") -> tuple[list[KeyValue], int]:
        """The keys in [key, range_end) (or `key` alone) and the store's revision."""
        answer = await self._call("/v3/kv/range", Range(key, range_end).to_json()["request_range"])
        kvs = [KeyValue.from_json(kv) for kv in answer.get("kvs", [])]
        return kvs, int(answer["header"]["revision"])

    async def count_changed_since(self, key: bytes, range_end: bytes, revision: int) -> int:
        """How many keys in [key, range_end) were written after `revision` (a cheap check that
        a watch is not stuck behind: only the changed keys' names come back). etcd's `count`
        ignores the revision filter, so the keys are counted here."""
        body = {**Range(key, range_end).to_json()["request_range"], "keys_only": True,
                "min_mod_revision": str(revision + 1)}
        answer = await self._call("/v3/kv/range", body)
        return len(answer.get("kvs", []))

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        answer = await self._call("/v3/kv/put", Put(key, value, lease).to_json()["request_put"])
        return int(answer["header"]["revision"])

    async def txn(self, compare: Sequence[Compare], success: Sequence[Put | Delete | Range],
                  failure: Sequence[Put | Delete | Range] = ()) -> TxnResult:
        """One atomic transaction: `success` runs if every comparison holds, else `failure`."""
        body = {
            "compare": [c.to_json() for c in compare],
            "success": [op.to_json() for op in success],
            "failure": [op.to_json() for op in failure],
        }
        answer = await self._call("/v3/kv/txn", body)
        ranges = [
            [KeyValue.from_json(kv) for kv in r["response_range"].get("kvs", [])]
            for r in answer.get("responses", [])
            if "response_range" in r
        ]
        return TxnResult(bool(answer.get("succeeded", False)), int(answer["header"]["revision"]), ranges)

    async def lease_grant(self, ttl: float) -> int:
        answer = await self._call("/v3/lease/grant", {"TTL": str(max(1, round(ttl)))})
        if answer.get("error"):
            raise EtcdError(answer["error"])
        return int(answer["ID"])

    async def lease_keepalive(self, lease_id: int) -> int:
        """Renew a lease once; its remaining TTL in seconds, 0 when it has already expired."""
        answer = await self._call("/v3/lease/keepalive", {"ID": str(lease_id)})
        result = answer.get("result", answer)
        return int(result.get("TTL", 0))

    async def lease_revoke(self, lease_id: int) -> None:
        try:
            await self._call("/v3/lease/revoke", {"ID": str(lease_id)})
        except EtcdError as e:
            if "not found" not in str(e):
                raise

    async def watch(self, key: bytes, range_end: bytes, start_revision: int) -> AsyncIterator[tuple[int, list[WatchEvent]]]:
        """Yield (revision, events) from `start_revision` on until the stream ends or fails;
        the caller resumes with the last revision + 1. A compacted start raises EtcdError."""
        body = {"create_request": {"key": b64(key), "range_end": b64(range_end),
                                   "start_revision": str(start_revision)}}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=None)
        async for resp in self._stream("/v3/watch", body, timeout):
            async for line in resp.content:
                if not line.strip():
                    continue
                message = json.loads(line)
                if "error" in message:
                    raise EtcdError(str(message["error"].get("message", message["error"])))
                result = message.get("result", {})
                if result.get("compact_revision") not in (None, "0"):
                    raise EtcdError(f"watch start {start_revision} was compacted")
                if result.get("canceled"):
                    raise EtcdError(str(result.get("cancel_reason", "watch cancelled")))
                events = [
                    WatchEvent(ev.get("type", "PUT"), KeyValue.from_json(ev["kv"]))
                    for ev in result.get("events", [])
                ]
                yield int(result.get("header", {}).get("revision", 0)), events
            return

    # --- transport ------------------------------------------------------------------------

    async def _authenticate(self, base: str) -> None:
        if self._user is None:
            return
        async with self._open().post(base + "/v3/auth/authenticate",
                                     json={"name": self._user, "password": self._password or ""},
                                     ssl=self._ssl) as resp:
            answer = await resp.json(content_type=None)
            if resp.status != 200 or "token" not in answer:
                raise EtcdError(f"etcd refused the credentials of user {self._user!r}: {_message(answer)}")
            self._token = answer["token"]

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token} if self._token else {}

    @property
    def preferred(self) -> str:
        """The endpoint calls go to first (the last one that answered)."""
        return self.endpoints[self._preferred]

    def _order(self) -> list[str]:
        n = len(self.endpoints)
        return [self.endpoints[(self._preferred + i) % n] for i in range(n)]

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: Exception | None = None
        for i, base in enumerate(self._order()):
            try:
                answer = await self._post_once(base, path, body)
            except (aiohttp.ClientError, TimeoutError, OSError, _NoLeader) as e:
                last = e
                continue
            self._preferred = (self._preferred + i) % len(self.endpoints)
            return answer
        raise EtcdUnavailable(f"no etcd endpoint answered ({', '.join(self.endpoints)}): {last}")

    async def _post_once(self, base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(2):
            if self._user is not None and self._token is None:
                await self._authenticate(base)
            async with self._open().post(base + path, json=body, headers=self._headers(), ssl=self._ssl) as resp:
                answer = await resp.json(content_type=None)
            if resp.status == 200:
                return answer if isinstance(answer, dict) else {}
            text = _message(answer)
            if "token" in text and attempt == 0 and self._user is not None:
                self._token = None  # expired or from another member: sign in again
                continue
            if "no leader" in text or "leader changed" in text or resp.status == 503:
                raise _NoLeader(text)
            raise EtcdError(f"etcd {path}: {resp.status} {text}")
        raise EtcdError(f"etcd {path}: authentication failed")

    async def _stream(self, path: str, body: dict[str, Any], timeout: aiohttp.ClientTimeout) -> AsyncIterator[aiohttp.ClientResponse]:
        last: Exception | None = None
        for base in self._order():
            try:
                if self._user is not None and self._token is None:
                    await self._authenticate(base)
                async with self._open().post(base + path, json=body, headers=self._headers(),
                                             ssl=self._ssl, timeout=timeout) as resp:
                    if resp.status != 200:
                        raise EtcdError(f"etcd {path}: {resp.status} {_message(await resp.json(content_type=None))}")
                    self.watching = base
                    try:
                        yield resp
                    finally:
                        self.watching = None
                    return
            except (aiohttp.ClientError, OSError) as e:
                last = e
                continue
        raise EtcdUnavailable(f"no etcd endpoint answered a watch ({', '.join(self.endpoints)}): {last}")


class _NoLeader(Exception):
    pass


def _message(answer: Any) -> str:
    if isinstance(answer, dict):
        return str(answer.get("message") or answer.get("error") or answer)
    return str(answer)


async def wait_ready(client: EtcdClient, timeout: float = 10.0) -> None:
    """Wait until the cluster answers a read (used by tests and the node's start)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await client.range(b"/lanqueue/")
            return
        except EtcdError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
