"""Signed HTTP between peers of a LAN queue: the client half and the request checks.

Every request is signed with the queue's secret (auth.py: method, path, body digest, counter,
node id, sender run, receiver run); every answer is signed too, bound to the request (sender run
and counter) and naming the answering run, so neither a peer without the secret nor anything
between two peers can read or change LAN state. No clock is involved anywhere.

A receiver that restarted refuses requests signed for its previous run with a signed 401 naming
its new run; the client remembers it per peer address and signs the request again, once.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
from collections.abc import AsyncIterator

import aiohttp

from .auth import HEADER_COUNTER, HEADER_INSTANCE, binding, sign_request

__all__ = ["RESPONDER", "PeerClient", "PeerRequestFailed", "response_signature_ok", "sign_response"]

RESPONSE_SIGNATURE = "X-Lanqueue-Response-Signature"
#: The answering node's run id; covered by the response signature.
RESPONDER = "X-Lanqueue-Responder"


class PeerRequestFailed(Exception):
    pass


def sign_response(secret: bytes, bound_to: str, body: bytes, responder: str = "") -> str:
    digest = hashlib.sha256(body).hexdigest()
    text = f"lanqueue-v2-response\n{bound_to}\n{responder}\n{digest}"
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def response_signature_ok(secret: bytes, bound_to: str, body: bytes, signature: str, responder: str = "") -> bool:
    expected = sign_response(secret, bound_to, body, responder)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


class PeerClient:
    """Makes signed requests to peers for one run of one node."""

    def __init__(self, node_id: str, timeout: float = 5.0, *, instance: str = "") -> None:
        self.node_id = node_id
        self.instance = instance or secrets.token_hex(8)
        self._counter = itertools.count(1)
        self._audience: dict[str, str] = {}  # peer base URL -> its current run id
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

    def _headers(self, base_url: str, secret: bytes, queue: str, method: str, path: str,
                 body: bytes) -> dict[str, str]:
        headers = sign_request(secret, method, path, body, node_id=self.node_id, queue=queue,
                               instance=self.instance, audience=self._audience.get(base_url, ""),
                               counter=next(self._counter))
        headers["Content-Type"] = "application/json"
        return headers

    def _learn_audience(self, base_url: str, secret: bytes, headers: dict[str, str], status: int,
                        answer: bytes, signature: str) -> bool:
        """A signed 401 names the peer's current run: remember it. Returns whether it did."""
        bound = binding(headers[HEADER_INSTANCE], int(headers[HEADER_COUNTER]))
        if status != 401 or not response_signature_ok(secret, bound, answer, signature):
            return False
        try:
            current = json.loads(answer).get("instance")
        except (ValueError, AttributeError):
            return False
        if not isinstance(current, str) or not current or current == self._audience.get(base_url):
            return False
        self._audience[base_url] = current
        return True

    async def post(self, base_url: str, path: str, body: bytes, *, queue: str, secret: bytes) -> bytes:
        """POST a signed body; return the verified answer body."""
        return (await self.post_signed(base_url, path, body, queue=queue, secret=secret))[0]

    async def post_signed(self, base_url: str, path: str, body: bytes, *, queue: str,
                          secret: bytes) -> tuple[bytes, str]:
        """POST a signed body; return the verified answer body and the run id that answered."""
        try:
            for _ in range(2):
                headers = self._headers(base_url, secret, queue, "POST", path, body)
                async with self._open().post(base_url + path, data=body, headers=headers) as resp:
                    answer = await resp.read()
                    signature = resp.headers.get(RESPONSE_SIGNATURE, "")
                    if self._learn_audience(base_url, secret, headers, resp.status, answer, signature):
                        continue  # the peer restarted: sign for its new run
                    if resp.status != 200:
                        raise PeerRequestFailed(f"{base_url}{path}: {resp.status} {answer[:200]!r}")
                    responder = resp.headers.get(RESPONDER, "")
                    bound = binding(headers[HEADER_INSTANCE], int(headers[HEADER_COUNTER]))
                    if not response_signature_ok(secret, bound, answer, signature, responder):
                        raise PeerRequestFailed(f"{base_url}{path}: answer not signed with the queue secret")
                    return answer, responder
            raise PeerRequestFailed(f"{base_url}{path}: the peer keeps refusing this node's signature")
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise PeerRequestFailed(f"{base_url}{path}: {e or type(e).__name__}") from None

    async def stream(self, base_url: str, path: str, *, queue: str, secret: bytes) -> AsyncIterator[bytes]:
        """GET a signed request and yield the body in chunks (file transfers). The content is
        verified by its sha256 digest by the caller, so the answer itself needs no signature."""
        try:
            for _ in range(2):
                headers = self._headers(base_url, secret, queue, "GET", path, b"")
                async with self._open().get(base_url + path, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as resp:
                    if resp.status == 401:
                        answer = await resp.read()
                        if self._learn_audience(base_url, secret, headers, 401, answer,
                                                resp.headers.get(RESPONSE_SIGNATURE, "")):
                            continue
                    if resp.status != 200:
                        raise PeerRequestFailed(f"{base_url}{path}: {resp.status}")
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        yield chunk
                    return
            raise PeerRequestFailed(f"{base_url}{path}: the peer keeps refusing this node's signature")
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise PeerRequestFailed(f"{base_url}{path}: {e or type(e).__name__}") from None
