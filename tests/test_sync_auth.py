"""Peer request signing: good requests pass; any change, replay, wrong secret or wrong receiver
run fails; no clock is involved (issue 11: a Pi hours off must be able to take part)."""

from __future__ import annotations

import pytest

from lanqueue.sync.auth import (
    HEADER_AUDIENCE,
    HEADER_COUNTER,
    HEADER_INSTANCE,
    HEADER_NODE,
    HEADER_QUEUE,
    HEADER_SIGNATURE,
    AuthError,
    StaleAudience,
    Verifier,
    sign_request,
)

SECRET = b"s3cret-of-queue-a"
METHOD, PATH, BODY = "POST", "/lanqueue/peer/v1/acquire?job=j1", b'{"job_id": "j1"}'
RECEIVER = "receiver-run-1"


def signed(counter: int = 1, **kw: object) -> dict[str, str]:
    args: dict = dict(node_id="node-1", queue="farm", instance="sender-run-1", audience=RECEIVER, counter=counter)
    args.update(kw)
    return sign_request(SECRET, METHOD, PATH, BODY, **args)


def verifier(**kw: object) -> Verifier:
    return Verifier({"farm": SECRET}, instance=RECEIVER, **kw)  # type: ignore[arg-type]


def test_good_signature_is_accepted() -> None:
    who = verifier().verify(METHOD, PATH, BODY, signed())
    assert (who.node_id, who.queue, who.instance, who.counter) == ("node-1", "farm", "sender-run-1", 1)
    assert who.binding == "sender-run-1/1"


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("PUT", PATH, BODY),
        (METHOD, "/lanqueue/peer/v1/release?job=j1", BODY),
        (METHOD, "/lanqueue/peer/v1/acquire", BODY),
        (METHOD, PATH, b'{"job_id": "j2"}'),
        (METHOD, PATH, b""),
    ],
    ids=["method", "path", "query-dropped", "body", "body-empty"],
)
def test_tampered_request_is_rejected(method: str, path: str, body: bytes) -> None:
    with pytest.raises(AuthError, match="bad signature"):
        verifier().verify(method, path, body, signed())


@pytest.mark.parametrize(
    "header, value",
    [
        (HEADER_NODE, "node-2"),
        (HEADER_QUEUE, "other"),
        (HEADER_INSTANCE, "sender-run-2"),
        (HEADER_AUDIENCE, "receiver-run-2"),
        (HEADER_COUNTER, "2"),
        (HEADER_SIGNATURE, "0" * 64),
    ],
)
def test_tampered_header_is_rejected(header: str, value: str) -> None:
    headers = signed()
    headers[header] = value
    v = Verifier({"farm": SECRET, "other": SECRET}, instance=RECEIVER)
    with pytest.raises(AuthError, match="bad signature"):
        v.verify(METHOD, PATH, BODY, headers)


def test_unknown_queue_and_wrong_secret_are_rejected() -> None:
    with pytest.raises(AuthError, match="unknown queue"):
        Verifier({"other": SECRET}, instance=RECEIVER).verify(METHOD, PATH, BODY, signed())
    headers = sign_request(b"not-the-secret", METHOD, PATH, BODY, node_id="node-1", queue="farm",
                           instance="s", audience=RECEIVER, counter=1)
    with pytest.raises(AuthError, match="bad signature"):
        verifier().verify(METHOD, PATH, BODY, headers)


def test_replay_within_a_run_is_rejected() -> None:
    v = verifier()
    headers = signed(counter=5)
    v.verify(METHOD, PATH, BODY, headers)
    with pytest.raises(AuthError, match="replayed"):
        v.verify(METHOD, PATH, BODY, headers)


def test_requests_of_one_run_may_arrive_out_of_order_but_each_counts_once() -> None:
    v = verifier(window=8)
    for c in (3, 1, 2, 10, 7):
        v.verify(METHOD, PATH, BODY, signed(counter=c))
    for c in (1, 7, 2):  # seen
        with pytest.raises(AuthError, match="replayed"):
            v.verify(METHOD, PATH, BODY, signed(counter=c))
    v.verify(METHOD, PATH, BODY, signed(counter=4))  # unseen and inside the window
    with pytest.raises(AuthError, match="replayed"):
        v.verify(METHOD, PATH, BODY, signed(counter=2 - 0))  # below the window now: 10 - 8 = 2


def test_a_request_captured_before_a_restart_is_refused_after_it() -> None:
    before = verifier()
    captured = signed(counter=1)
    before.verify(METHOD, PATH, BODY, captured)
    after = Verifier({"farm": SECRET}, instance="receiver-run-2")  # the receiver restarted: new run, no memory
    with pytest.raises(StaleAudience) as e:
        after.verify(METHOD, PATH, BODY, captured)
    assert e.value.current == "receiver-run-2"  # what an honest sender needs to sign again
    # signed again for the new run, the same sender is accepted
    assert after.verify(METHOD, PATH, BODY, signed(counter=2, audience="receiver-run-2")).node_id == "node-1"


def test_a_sender_that_restarted_is_accepted_with_its_new_run() -> None:
    v = verifier()
    v.verify(METHOD, PATH, BODY, signed(counter=100))
    assert v.verify(METHOD, PATH, BODY, signed(counter=1, instance="sender-run-2")).instance == "sender-run-2"


@pytest.mark.parametrize("missing", [HEADER_NODE, HEADER_QUEUE, HEADER_INSTANCE, HEADER_AUDIENCE, HEADER_COUNTER,
                                     HEADER_SIGNATURE])
def test_missing_header_is_rejected(missing: str) -> None:
    headers = signed()
    del headers[missing]
    with pytest.raises(AuthError, match="missing"):
        verifier().verify(METHOD, PATH, BODY, headers)


def test_malformed_fields_are_rejected() -> None:
    for bad in ("12.5", "-1", "0", "9" * 30):
        headers = signed()
        headers[HEADER_COUNTER] = bad
        with pytest.raises(AuthError, match="counter"):
            verifier().verify(METHOD, PATH, BODY, headers)
    with pytest.raises(AuthError):
        signed(node_id="bad\nnode")


def test_invalid_requests_leave_no_trace() -> None:
    v = verifier(max_runs=2)
    for i in range(10):
        headers = signed(counter=i + 1, instance=f"run{i}")
        headers[HEADER_SIGNATURE] = "f" * 64
        with pytest.raises(AuthError):
            v.verify(METHOD, PATH, BODY, headers)
    assert not v._runs


def test_runs_tracked_are_bounded_and_a_dropped_run_stays_refused() -> None:
    v = verifier(max_runs=2)
    for i in range(3):
        v.verify(METHOD, PATH, BODY, signed(counter=1, instance=f"run{i}"))
    assert len(v._runs) == 2
    with pytest.raises(AuthError, match="replayed"):
        v.verify(METHOD, PATH, BODY, signed(counter=2, instance="run0"))


def test_no_clock_anywhere() -> None:
    """The headers carry no time, so two nodes hours apart verify each other as well as any."""
    headers = signed()
    assert not any("time" in h.lower() for h in headers)
