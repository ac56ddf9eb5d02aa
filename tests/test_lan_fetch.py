"""LAN file fetching with the real file store and SQLite store; the peer is a small stand-in
that streams whatever bytes it is given (a tampering or broken peer)."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from lanqueue.files import FileStore
from lanqueue.store import Store
from lanqueue.sync.fetch import FileFetcher
from lanqueue.sync.records import SetRecord

GOOD = b"G28\nG1 X10 Y10\n"
DIGEST = hashlib.sha256(GOOD).hexdigest()


class Peers:
    """The directory and the client of one online peer that answers with `body`."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def online(self, queue: str) -> dict[str, str]:
        return {"peer-1": "http://peer-1"}

    async def stream(self, url, path, *, queue, secret):
        yield self.body


async def test_wrong_bytes_from_a_peer_never_reach_the_store(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    files = FileStore(tmp_path / "files", max_size=1 << 20)
    try:
        queue = SimpleNamespace(name="farm", secret=b"farm-secret-1")
        wanted = SetRecord("part.gcode", 1, 1, hash=DIGEST)
        # a good copy is already at the target path (written before a crash, say, or by a
        # concurrent fetch from an honest peer): a tampering peer must not replace or delete it
        target = f"lan/{DIGEST[:16]}-part.gcode"
        files.location(target).parent.mkdir(parents=True)
        files.location(target).write_bytes(GOOD)
        peers = Peers(b"G28\nG1 X999 Y999\n")
        fetcher = FileFetcher(store, files, peers, peers)  # type: ignore[arg-type]
        assert await fetcher.fetch(queue, wanted) is None
        assert fetcher.rejected == 1
        assert files.location(target).read_bytes() == GOOD
        assert [f.path for f in files.list()] == [target]
        peers.body = GOOD
        assert await fetcher.fetch(queue, wanted) == target
        assert await store.file_by_digest(DIGEST) == target
    finally:
        await store.async_close()
