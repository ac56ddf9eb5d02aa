"""HMAC-SHA256 signatures for node-to-node requests of one LAN queue.

Every peer request carries five headers: the sending node, the queue, a timestamp, a nonce and
the signature. The signature covers (newline-separated, in this order) a version tag, the HTTP
method, the path with its query string, the sha256 of the body, the timestamp, the nonce, the node
id and the queue name, keyed with the queue's shared secret. So a request cannot be moved to
another path, method, body, queue or sender, and a replay is caught by the nonce cache.

Why the timestamp window is wide (5 minutes by default): it compares the sender's wall clock with
ours, and printers' Raspberry Pis often have poor clocks. It only bounds how long the nonce cache
must remember a nonce; the nonce cache is what stops replays. Leases never use the wall clock.

Pure functions plus one small stateful class (`Verifier`, holding the bounded nonce cache).
Time is passed in (`now`, wall-clock seconds) so tests need no sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import Forbidden

__all__ = [
    "HEADER_NODE",
    "HEADER_QUEUE",
    "HEADER_TIMESTAMP",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "SIGNATURE_VERSION",
    "AuthError",
    "SignedRequest",
    "canonical_string",
    "sign",
    "sign_request",
    "Verifier",
]

HEADER_NODE = "X-Lanqueue-Node"
HEADER_QUEUE = "X-Lanqueue-Queue"
HEADER_TIMESTAMP = "X-Lanqueue-Timestamp"
HEADER_NONCE = "X-Lanqueue-Nonce"
HEADER_SIGNATURE = "X-Lanqueue-Signature"
SIGNATURE_VERSION = "lanqueue-v1"

_MAX_FIELD = 256  # node ids, queue names, nonces: anything longer is malformed


class AuthError(Forbidden):
    """The request is not signed correctly; reject it (403), log it, store nothing from it."""


@dataclass(frozen=True)
class SignedRequest:
    """The authenticated identity of a verified request."""

    node_id: str
    queue: str
    nonce: str
    timestamp: int


def _check_field(name: str, value: str) -> None:
    if not value or len(value) > _MAX_FIELD or "\n" in value or "\r" in value:
        raise AuthError(f"malformed {name}")


def canonical_string(method: str, path_qs: str, body: bytes, timestamp: int, nonce: str, node_id: str,
                     queue: str) -> bytes:
    """The exact bytes that are signed. `path_qs` is the path with its query string, as sent."""
    for name, value in (("method", method), ("path", path_qs), ("nonce", nonce), ("node", node_id),
                        ("queue", queue)):
        if "\n" in value or "\r" in value:
            raise AuthError(f"malformed {name}")
    body_digest = hashlib.sha256(body).hexdigest()
    parts = [SIGNATURE_VERSION, method.upper(), path_qs, body_digest, str(int(timestamp)), nonce, node_id, queue]
    return "\n".join(parts).encode("utf-8")


def sign(secret: bytes, method: str, path_qs: str, body: bytes, timestamp: int, nonce: str, node_id: str,
         queue: str) -> str:
    """Hex HMAC-SHA256 of the canonical string under the queue secret."""
    msg = canonical_string(method, path_qs, body, timestamp, nonce, node_id, queue)
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def sign_request(secret: bytes, method: str, path_qs: str, body: bytes, *, node_id: str, queue: str,
                 now: float, nonce: str | None = None) -> dict[str, str]:
    """The headers to add to an outgoing peer request."""
    _check_field("node", node_id)
    _check_field("queue", queue)
    nonce = nonce if nonce is not None else secrets.token_hex(16)
    _check_field("nonce", nonce)
    ts = int(now)
    return {
        HEADER_NODE: node_id,
        HEADER_QUEUE: queue,
        HEADER_TIMESTAMP: str(ts),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: sign(secret, method, path_qs, body, ts, nonce, node_id, queue),
    }


class Verifier:
    """Checks signed requests for the queues this node has joined, with replay protection.

    The nonce cache is bounded (`max_nonces`, oldest evicted first) and entries older than the
    timestamp window are dropped, since a request that old is rejected by its timestamp anyway.
    If the cache overflows within one window, the oldest nonces could be replayed; keep
    `max_nonces` above the expected requests per window (the default fits ~300 requests/s).
    """

    def __init__(self, secrets_by_queue: Mapping[str, bytes], *, window: float = 300.0,
                 max_nonces: int = 100_000) -> None:
        if window <= 0 or max_nonces <= 0:
            raise ValueError("window and max_nonces must be positive")
        self._secrets = dict(secrets_by_queue)
        self.window = window
        self.max_nonces = max_nonces
        self._nonces: OrderedDict[tuple[str, str], float] = OrderedDict()

    def set_secret(self, queue: str, secret: bytes) -> None:
        self._secrets[queue] = secret

    def _expire(self, now: float) -> None:
        while self._nonces:
            _key, seen = next(iter(self._nonces.items()))
            if now - seen <= 2 * self.window and len(self._nonces) <= self.max_nonces:
                break
            self._nonces.popitem(last=False)

    def verify(self, method: str, path_qs: str, body: bytes, headers: Mapping[str, str], now: float
               ) -> SignedRequest:
        """Return who signed the request, or raise `AuthError`. Nothing is remembered unless the
        signature is valid, so garbage cannot fill the nonce cache."""
        try:
            node_id = headers[HEADER_NODE]
            queue = headers[HEADER_QUEUE]
            ts_text = headers[HEADER_TIMESTAMP]
            nonce = headers[HEADER_NONCE]
            signature = headers[HEADER_SIGNATURE]
        except KeyError as e:
            raise AuthError(f"missing header {e.args[0]}") from None
        for name, value in (("node", node_id), ("queue", queue), ("nonce", nonce)):
            _check_field(name, value)
        if not ts_text.isdigit() or len(ts_text) > 12:
            raise AuthError("malformed timestamp")
        secret = self._secrets.get(queue)
        if secret is None:
            raise AuthError("unknown queue")
        expected = sign(secret, method, path_qs, body, int(ts_text), nonce, node_id, queue)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
            raise AuthError("bad signature")
        ts = int(ts_text)
        if abs(now - ts) > self.window:
            raise AuthError("timestamp outside the accepted window")
        self._expire(now)
        key = (node_id, nonce)
        if key in self._nonces:
            raise AuthError("replayed request")
        self._nonces[key] = now
        if len(self._nonces) > self.max_nonces:
            self._nonces.popitem(last=False)
        return SignedRequest(node_id=node_id, queue=queue, nonce=nonce, timestamp=ts)
