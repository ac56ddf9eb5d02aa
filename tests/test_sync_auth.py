"""Peer request signing: good requests pass; any change, replay, wrong secret or old timestamp fails."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lanqueue.sync.auth import (
    HEADER_NODE,
    HEADER_NONCE,
    HEADER_QUEUE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    AuthError,
    Verifier,
    sign_request,
)

SECRET = b"s3cret-of-queue-a"
NOW = 1_800_000_000.0
METHOD, PATH, BODY = "POST", "/lanqueue/peer/v1/acquire?job=j1", b'{"job_id": "j1"}'


def signed(**kw: object) -> dict[str, str]:
    args: dict = dict(node_id="node-1", queue="farm", now=NOW)
    args.update(kw)
    return sign_request(SECRET, METHOD, PATH, BODY, **args)


def verifier(**kw: object) -> Verifier:
    return Verifier({"farm": SECRET}, **kw)  # type: ignore[arg-type]


def test_good_signature_is_accepted() -> None:
    who = verifier().verify(METHOD, PATH, BODY, signed(), NOW + 1)
    assert (who.node_id, who.queue) == ("node-1", "farm")


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("PUT", PATH, BODY),
        (METHOD, "/lanqueue/peer/v1/release?job=j1", BODY),
        (METHOD, "/lanqueue/peer/v1/acquire?job=j2", BODY),
        (METHOD, "/lanqueue/peer/v1/acquire", BODY),
        (METHOD, PATH, b'{"job_id": "j2"}'),
        (METHOD, PATH, b""),
    ],
    ids=["method", "path", "query", "query-dropped", "body", "body-empty"],
)
def test_tampered_request_is_rejected(method: str, path: str, body: bytes) -> None:
    with pytest.raises(AuthError, match="bad signature"):
        verifier().verify(method, path, body, signed(), NOW)


@pytest.mark.parametrize(
    "header, value",
    [
        (HEADER_NODE, "node-2"),
        (HEADER_TIMESTAMP, str(int(NOW) + 1)),
        (HEADER_NONCE, "another-nonce"),
        (HEADER_SIGNATURE, "0" * 64),
    ],
)
def test_tampered_header_is_rejected(header: str, value: str) -> None:
    headers = signed()
    headers[header] = value
    with pytest.raises(AuthError, match="bad signature"):
        verifier().verify(METHOD, PATH, BODY, headers, NOW)


def test_queue_header_cannot_be_switched_to_another_queue() -> None:
    headers = signed()
    headers[HEADER_QUEUE] = "other"
    v = Verifier({"farm": SECRET, "other": SECRET})  # same secret even: the queue is signed
    with pytest.raises(AuthError, match="bad signature"):
        v.verify(METHOD, PATH, BODY, headers, NOW)


def test_unknown_queue_is_rejected() -> None:
    with pytest.raises(AuthError, match="unknown queue"):
        Verifier({"other": SECRET}).verify(METHOD, PATH, BODY, signed(), NOW)


def test_replay_is_rejected() -> None:
    v = verifier()
    headers = signed()
    v.verify(METHOD, PATH, BODY, headers, NOW)
    with pytest.raises(AuthError, match="replayed"):
        v.verify(METHOD, PATH, BODY, headers, NOW + 10)


def test_wrong_secret_is_rejected() -> None:
    headers = sign_request(b"not-the-secret", METHOD, PATH, BODY, node_id="node-1", queue="farm", now=NOW)
    with pytest.raises(AuthError, match="bad signature"):
        verifier().verify(METHOD, PATH, BODY, headers, NOW)


@pytest.mark.parametrize("skew", [-301.0, 301.0, 10_000.0])
def test_timestamp_outside_window_is_rejected(skew: float) -> None:
    with pytest.raises(AuthError, match="window"):
        verifier().verify(METHOD, PATH, BODY, signed(), NOW + skew)


def test_generous_window_accepts_moderate_clock_skew() -> None:
    assert verifier().verify(METHOD, PATH, BODY, signed(), NOW - 240).node_id == "node-1"


@pytest.mark.parametrize("missing", [HEADER_NODE, HEADER_QUEUE, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE])
def test_missing_header_is_rejected(missing: str) -> None:
    headers = signed()
    del headers[missing]
    with pytest.raises(AuthError, match="missing"):
        verifier().verify(METHOD, PATH, BODY, headers, NOW)


def test_malformed_fields_are_rejected() -> None:
    headers = signed()
    headers[HEADER_TIMESTAMP] = "12.5"
    with pytest.raises(AuthError, match="timestamp"):
        verifier().verify(METHOD, PATH, BODY, headers, NOW)
    with pytest.raises(AuthError):
        signed(node_id="bad\nnode")


def test_invalid_requests_do_not_fill_the_nonce_cache() -> None:
    v = verifier(max_nonces=2)
    for i in range(10):
        headers = signed(nonce=f"n{i}")
        headers[HEADER_SIGNATURE] = "f" * 64
        with pytest.raises(AuthError):
            v.verify(METHOD, PATH, BODY, headers, NOW)
    assert len(v._nonces) == 0


def test_nonce_cache_is_bounded_and_old_nonces_expire() -> None:
    v = verifier(max_nonces=3, window=300)
    for i in range(5):
        v.verify(METHOD, PATH, BODY, signed(nonce=f"n{i}"), NOW)
    assert len(v._nonces) == 3
    v.verify(METHOD, PATH, BODY, signed(nonce="late", now=NOW + 700), NOW + 700)
    assert list(v._nonces) == [("node-1", "late")]


def test_same_nonce_from_two_nodes_is_two_requests() -> None:
    v = verifier()
    v.verify(METHOD, PATH, BODY, signed(nonce="x"), NOW)
    v.verify(METHOD, PATH, BODY, signed(nonce="x", node_id="node-2"), NOW)


@given(body=st.binary(max_size=256), flip=st.integers(min_value=0, max_value=10_000))
def test_any_single_bit_flip_of_the_body_is_rejected(body: bytes, flip: int) -> None:
    headers = sign_request(SECRET, METHOD, PATH, body, node_id="n", queue="farm", now=NOW)
    if not body:
        tampered = b"\x00"
    else:
        i = flip % (len(body) * 8)
        flipped = bytearray(body)
        flipped[i // 8] ^= 1 << (i % 8)
        tampered = bytes(flipped)
    with pytest.raises(AuthError):
        Verifier({"farm": SECRET}).verify(METHOD, PATH, tampered, headers, NOW)
