"""HMAC-SHA256 signatures for node-to-node requests of one LAN queue, with no clock in them.

Every peer request carries six headers: the sending node, the queue, the sender's run id
(`instance`, random per start), the receiver's run id as the sender knows it (`audience`), a
counter and the signature. The signature covers (newline-separated, in this order) a version tag,
the HTTP method, the path with its query string, the sha256 of the body, the counter, the node id,
the queue, the instance and the audience, keyed with the queue's shared secret. So a request
cannot be moved to another path, method, body, queue, sender or receiver run.

Why no timestamp: a Raspberry Pi without a clock that boots before NTP (or in a farm without
internet) is hours off, and a timestamp window then refuses every message while the peer looks
online, quietly splitting the queue. Replays are refused without any clock instead:

- across the receiver's restarts: a request names the receiver's current run (`audience`); after
  a restart the receiver has a new run id and refuses anything signed for the old one (a
  `StaleAudience` answer, signed, tells an honest sender the new id, and it signs again);
- within one run: each (sender, sender run) has a counter that only grows; the receiver accepts
  each value once, and none more than `window` below the highest it has seen (requests a sender
  makes concurrently may arrive slightly out of order).

Pure functions plus one small stateful class (`Verifier`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import Forbidden

__all__ = [
    "HEADER_AUDIENCE",
    "HEADER_COUNTER",
    "HEADER_INSTANCE",
    "HEADER_NODE",
    "HEADER_QUEUE",
    "HEADER_SIGNATURE",
    "SIGNATURE_VERSION",
    "AuthError",
    "SignedRequest",
    "StaleAudience",
    "Verifier",
    "binding",
    "canonical_string",
    "sign",
    "sign_request",
]

HEADER_NODE = "X-Lanqueue-Node"
HEADER_QUEUE = "X-Lanqueue-Queue"
HEADER_INSTANCE = "X-Lanqueue-Instance"
HEADER_AUDIENCE = "X-Lanqueue-Audience"
HEADER_COUNTER = "X-Lanqueue-Counter"
HEADER_SIGNATURE = "X-Lanqueue-Signature"
SIGNATURE_VERSION = "lanqueue-v2"

_MAX_FIELD = 256  # node ids, queue names, run ids: anything longer is malformed
_MAX_COUNTER = 2**63


class AuthError(Forbidden):
    """The request is not signed correctly; reject it (403), log it, store nothing from it."""


@dataclass(frozen=True)
class SignedRequest:
    """The authenticated identity of a verified request."""

    node_id: str
    queue: str
    instance: str
    counter: int

    @property
    def binding(self) -> str:
        """What the answer's signature is bound to (one request of one run)."""
        return f"{self.instance}/{self.counter}"


class StaleAudience(AuthError):
    """Correctly signed, but for an earlier run of this node (a replay, or a sender that has not
    heard of the restart yet): answer with the current run id so an honest sender signs again."""

    def __init__(self, signed: SignedRequest, current: str) -> None:
        super().__init__("signed for an earlier run of this node")
        self.signed = signed
        self.current = current


def binding(instance: str, counter: int) -> str:
    return f"{instance}/{counter}"


def _check_field(name: str, value: str, *, empty_ok: bool = False) -> None:
    if (not value and not empty_ok) or len(value) > _MAX_FIELD or "\n" in value or "\r" in value:
        raise AuthError(f"malformed {name}")


def canonical_string(method: str, path_qs: str, body: bytes, counter: int, node_id: str, queue: str,
                     instance: str, audience: str) -> bytes:
    """The exact bytes that are signed. `path_qs` is the path with its query string, as sent."""
    for name, value in (("method", method), ("path", path_qs), ("node", node_id), ("queue", queue),
                        ("instance", instance), ("audience", audience)):
        if "\n" in value or "\r" in value:
            raise AuthError(f"malformed {name}")
    body_digest = hashlib.sha256(body).hexdigest()
    parts = [SIGNATURE_VERSION, method.upper(), path_qs, body_digest, str(int(counter)), node_id, queue,
             instance, audience]
    return "\n".join(parts).encode("utf-8")


def sign(secret: bytes, method: str, path_qs: str, body: bytes, counter: int, node_id: str, queue: str,
         instance: str, audience: str) -> str:
    """Hex HMAC-SHA256 of the canonical string under the queue secret."""
    msg = canonical_string(method, path_qs, body, counter, node_id, queue, instance, audience)
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def sign_request(secret: bytes, method: str, path_qs: str, body: bytes, *, node_id: str, queue: str,
                 instance: str, audience: str, counter: int) -> dict[str, str]:
    """The headers to add to an outgoing peer request. `audience` is empty when the receiver's
    run is not known yet (the receiver answers with it)."""
    _check_field("node", node_id)
    _check_field("queue", queue)
    _check_field("instance", instance)
    _check_field("audience", audience, empty_ok=True)
    if not 0 < counter < _MAX_COUNTER:
        raise AuthError("malformed counter")
    return {
        HEADER_NODE: node_id,
        HEADER_QUEUE: queue,
        HEADER_INSTANCE: instance,
        HEADER_AUDIENCE: audience,
        HEADER_COUNTER: str(counter),
        HEADER_SIGNATURE: sign(secret, method, path_qs, body, counter, node_id, queue, instance, audience),
    }


@dataclass
class _Seen:
    """Counters seen from one run of one sender: the highest, and which of the last `window`."""

    high: int = 0
    recent: set[int] = field(default_factory=set)


class Verifier:
    """Checks signed requests for the queues this node has joined, with replay protection.

    Memory is bounded: `window` counters per sender run, `max_runs` sender runs (least recently
    heard dropped first; a dropped run's requests are refused from then on, as stale).
    """

    def __init__(self, secrets_by_queue: Mapping[str, bytes], *, instance: str = "", window: int = 1024,
                 max_runs: int = 4096) -> None:
        if window <= 0 or max_runs <= 0:
            raise ValueError("window and max_runs must be positive")
        self._secrets = dict(secrets_by_queue)
        self.instance = instance
        self.window = window
        self.max_runs = max_runs
        self._runs: OrderedDict[tuple[str, str], _Seen] = OrderedDict()
        self._retired: set[tuple[str, str]] = set()

    def set_secret(self, queue: str, secret: bytes) -> None:
        self._secrets[queue] = secret

    def verify(self, method: str, path_qs: str, body: bytes, headers: Mapping[str, str]) -> SignedRequest:
        """Return who signed the request, or raise `AuthError` (`StaleAudience` for a request
        signed for another run of this node). Nothing is remembered unless the signature is valid
        and addressed to this run, so garbage and old captures cannot fill the counter table."""
        try:
            node_id, queue = headers[HEADER_NODE], headers[HEADER_QUEUE]
            instance, audience = headers[HEADER_INSTANCE], headers[HEADER_AUDIENCE]
            counter_text, signature = headers[HEADER_COUNTER], headers[HEADER_SIGNATURE]
        except KeyError as e:
            raise AuthError(f"missing header {e.args[0]}") from None
        for name, value in (("node", node_id), ("queue", queue), ("instance", instance)):
            _check_field(name, value)
        _check_field("audience", audience, empty_ok=True)
        if not counter_text.isdigit() or len(counter_text) > 19 or not 0 < int(counter_text) < _MAX_COUNTER:
            raise AuthError("malformed counter")
        counter = int(counter_text)
        secret = self._secrets.get(queue)
        if secret is None:
            raise AuthError("unknown queue")
        expected = sign(secret, method, path_qs, body, counter, node_id, queue, instance, audience)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
            raise AuthError("bad signature")
        signed = SignedRequest(node_id=node_id, queue=queue, instance=instance, counter=counter)
        if audience != self.instance:
            raise StaleAudience(signed, self.instance)
        self._accept(node_id, instance, counter)
        return signed

    def _accept(self, node_id: str, instance: str, counter: int) -> None:
        key = (node_id, instance)
        if key in self._retired:
            raise AuthError("replayed request (run no longer tracked)")
        seen = self._runs.pop(key, None) or _Seen()
        self._runs[key] = seen  # most recently heard last
        try:
            if counter <= seen.high - self.window or counter in seen.recent:
                raise AuthError("replayed request")
        finally:
            while len(self._runs) > self.max_runs:
                old, _ = self._runs.popitem(last=False)
                self._retired.add(old)
        seen.recent.add(counter)
        if counter > seen.high:
            seen.high = counter
            seen.recent = {c for c in seen.recent if c > counter - self.window}
