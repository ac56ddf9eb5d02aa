"""The etcd JSON-gateway client against a real etcd (Debian's etcd-server)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lanqueue.etcd.client import (
    Compare,
    Delete,
    EtcdClient,
    EtcdError,
    EtcdUnavailable,
    Put,
    Range,
    prefix_end,
)
from tests.etcd_server import enable_auth, free_port, start_cluster


@pytest.fixture
def etcd(tmp_path: Path):  # type: ignore[no-untyped-def]
    cluster = start_cluster(tmp_path / "etcd")
    yield cluster
    cluster.stop()


def test_prefix_end() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


async def test_put_range_txn_revisions(etcd) -> None:  # type: ignore[no-untyped-def]
    c = EtcdClient(etcd.endpoints)
    try:
        rev1 = await c.put(b"/lanqueue/t/a", b"1")
        rev2 = await c.put(b"/lanqueue/t/b", b"2")
        assert rev2 == rev1 + 1
        kvs, rev = await c.range(b"/lanqueue/t/", prefix_end(b"/lanqueue/t/"))
        assert [(kv.key, kv.value) for kv in kvs] == [(b"/lanqueue/t/a", b"1"), (b"/lanqueue/t/b", b"2")]
        assert rev == rev2
        # create-if-absent: the first succeeds, the second sees the key and takes the failure branch
        ok = await c.txn([Compare(b"/lanqueue/t/c", "CREATE", 0)], [Put(b"/lanqueue/t/c", b"x")],
                         [Range(b"/lanqueue/t/c")])
        again = await c.txn([Compare(b"/lanqueue/t/c", "CREATE", 0)], [Put(b"/lanqueue/t/c", b"y")],
                            [Range(b"/lanqueue/t/c")])
        assert ok.succeeded and not again.succeeded
        assert again.ranges[0][0].value == b"x" and again.ranges[0][0].create_revision == ok.revision
        # compare on the mod revision: a stale writer loses
        stale = await c.txn([Compare(b"/lanqueue/t/a", "MOD", rev1 - 1)], [Delete(b"/lanqueue/t/a")])
        assert not stale.succeeded
        assert (await c.range(b"/lanqueue/t/a"))[0][0].value == b"1"
    finally:
        await c.async_close()


async def test_lease_expiry_deletes_key_and_watch_sees_it(etcd) -> None:  # type: ignore[no-untyped-def]
    c = EtcdClient(etcd.endpoints)
    try:
        lease = await c.lease_grant(2)
        rev = await c.put(b"/lanqueue/t/held", b"n1", lease=lease)
        assert await c.lease_keepalive(lease) >= 1
        events: list[tuple[str, bytes]] = []

        async def watch() -> None:
            async for _rev, evs in c.watch(b"/lanqueue/t/", prefix_end(b"/lanqueue/t/"), rev):
                events.extend((e.kind, e.kv.key) for e in evs)
                if any(k == "DELETE" for k, _ in events):
                    return

        await asyncio.wait_for(watch(), 10)
        assert events[0] == ("PUT", b"/lanqueue/t/held")
        assert ("DELETE", b"/lanqueue/t/held") in events
        assert (await c.range(b"/lanqueue/t/held"))[0] == []
        assert await c.lease_keepalive(lease) == 0
    finally:
        await c.async_close()


async def test_unreachable_and_failover(etcd) -> None:  # type: ignore[no-untyped-def]
    dead = f"http://127.0.0.1:{free_port()}"
    c = EtcdClient([dead, *etcd.endpoints])
    try:
        await c.put(b"/lanqueue/t/x", b"1")  # the dead endpoint is skipped
    finally:
        await c.async_close()
    gone = EtcdClient([dead], timeout=1)
    try:
        with pytest.raises(EtcdUnavailable):
            await gone.range(b"/lanqueue/")
    finally:
        await gone.async_close()


async def test_auth_required_when_enabled(etcd) -> None:  # type: ignore[no-untyped-def]
    enable_auth(etcd, "farm", "s3cret-pass")
    anonymous = EtcdClient(etcd.endpoints)
    wrong = EtcdClient(etcd.endpoints, user="farm", password="nope")
    right = EtcdClient(etcd.endpoints, user="farm", password="s3cret-pass")
    try:
        with pytest.raises(EtcdError):
            await anonymous.put(b"/lanqueue/t/a", b"1")
        with pytest.raises(EtcdError):
            await anonymous.range(b"/lanqueue/t/a")
        with pytest.raises(EtcdError):
            await wrong.range(b"/lanqueue/t/a")
        await right.put(b"/lanqueue/t/a", b"1")
        assert (await right.range(b"/lanqueue/t/a"))[0][0].value == b"1"
    finally:
        for c in (anonymous, wrong, right):
            await c.async_close()


async def test_count_changed_since_counts_only_later_writes(etcd) -> None:  # type: ignore[no-untyped-def]
    c = EtcdClient(etcd.endpoints)
    try:
        first = await c.put(b"/lanqueue/c/a", b"1")
        await c.put(b"/lanqueue/c/b", b"1")
        third = await c.put(b"/lanqueue/c/a", b"2")
        end = prefix_end(b"/lanqueue/c/")
        assert await c.count_changed_since(b"/lanqueue/c/", end, first - 1) == 2
        assert await c.count_changed_since(b"/lanqueue/c/", end, first) == 2  # b, and a again
        assert await c.count_changed_since(b"/lanqueue/c/", end, third - 1) == 1
        assert await c.count_changed_since(b"/lanqueue/c/", end, third) == 0
    finally:
        await c.async_close()
