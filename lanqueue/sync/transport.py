"""Signed HTTP between peers of a LAN queue: the client half and the request checks.

Every request is signed with the queue's secret (auth.py: method, path, body digest, timestamp,
nonce, node id); every answer is signed too, bound to the request's nonce, so neither a peer
without the secret nor anything between two peers can read or change LAN state.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator

import aiohttp

from .auth import HEADER_NONCE, sign_request

__all__ = ["PeerClient", "PeerRequestFailed", "sign_response", "response_signature_ok"]

RESPONSE_SIGNATURE = "X-Lanqueue-Response-Signature"


class PeerRequestFailed(Exception):
    pass


def sign_response(secret: bytes, nonce: str, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()
    return hmac.new(secret, f"lanqueue-v1-response\n{nonce}\n{digest}".encode(), hashlib.sha256).hexdigest()


def response_signature_ok(secret: bytes, nonce: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign_response(secret, nonce, body).encode(), signature.encode("utf-8", "replace"))


class PeerClient:
    """Makes signed requests to peers for one node."""

    def __init__(self, node_id: str, timeout: float = 5.0) -> None:
        self.node_id = node_id
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 2.0))

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def async_close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, secret: bytes, queue: str, method: str, path: str, body: bytes) -> dict[str, str]:
        headers = sign_request(secret, method, path, body, node_id=self.node_id, queue=queue, now=time.time())
        headers["Content-Type"] = "application/json"
        return headers

    async def post(self, base_url: str, path: str, body: bytes, *, queue: str, secret: bytes) -> bytes:
        """POST a signed body; return the verified answer body."""
        headers = self._headers(secret, queue, "POST", path, body)
        try:
            async with self._open().post(base_url + path, data=body, headers=headers) as resp:
                answer = await resp.read()
                if resp.status != 200:
                    raise PeerRequestFailed(f"{base_url}{path}: {resp.status} {answer[:200]!r}")
                if not response_signature_ok(secret, headers[HEADER_NONCE], answer, resp.headers.get(RESPONSE_SIGNATURE, "")):
                    raise PeerRequestFailed(f"{base_url}{path}: answer not signed with the queue secret")
                return answer
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise PeerRequestFailed(f"{base_url}{path}: {e or type(e).__name__}") from None

    async def stream(self, base_url: str, path: str, *, queue: str, secret: bytes) -> AsyncIterator[bytes]:
        """GET a signed request and yield the body in chunks (file transfers). The content is
        verified by its sha256 digest by the caller, so the answer itself needs no signature."""
        headers = self._headers(secret, queue, "GET", path, b"")
        try:
            async with self._open().get(base_url + path, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as resp:
                if resp.status != 200:
                    raise PeerRequestFailed(f"{base_url}{path}: {resp.status}")
                async for chunk in resp.content.iter_chunked(1 << 16):
                    yield chunk
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise PeerRequestFailed(f"{base_url}{path}: {e or type(e).__name__}") from None
