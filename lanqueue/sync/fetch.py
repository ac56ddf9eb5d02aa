"""Job files for LAN jobs: content-addressed by sha256, fetched from any peer that has them.

A fetched file is streamed to a staging file and put into the store only if its content hashes
to the digest the job's record names; anything else is discarded and counted as rejected. Peers are served only
files the store records by digest, so a request can never reach outside the store.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BadRequest, NotFound
from ..files import FileStore
from ..store import Store
from .records import SetRecord
from .transport import PeerClient, PeerRequestFailed

if TYPE_CHECKING:
    from .directory import LanQueue, PeerDirectory

__all__ = ["FileFetcher", "FILE_PATH"]

log = logging.getLogger(__name__)
FILE_PATH = "/lanqueue/peer/v1/files/"


class FileFetcher:
    def __init__(self, store: Store, files: FileStore, client: PeerClient, directory: PeerDirectory) -> None:
        self.store = store
        self.files = files
        self.client = client
        self.directory = directory
        self.rejected = 0

    async def local_file(self, q: LanQueue, s: SetRecord) -> str | None:
        """A path in the file store holding the set's content, fetched from a peer if needed."""
        path = await self.store.file_by_digest(s.hash)
        if path is not None and self.files.exists(path):
            return path
        return await self.fetch(q, s)

    async def fetch(self, q: LanQueue, s: SetRecord) -> str | None:
        """Fetch by digest from any online peer; the content must hash to the digest."""
        target = f"lan/{s.hash[:16]}-{Path(s.path).name}"
        for node_id, url in self.directory.online(q.name).items():
            try:  # staged, not yet in the store: wrong bytes never sit at the target path
                staged = await self.files.stage(target, self.client.stream(url, FILE_PATH + s.hash, queue=q.name, secret=q.secret))
            except PeerRequestFailed as e:
                log.info("fetching %s from %s failed: %s", s.path, node_id[:8], e)
                continue
            except Exception as e:  # noqa: BLE001 - size limit, bad type: try another peer
                log.warning("fetching %s from %s refused: %s", s.path, node_id[:8], e)
                continue
            if staged.sha256 != s.hash:
                self.rejected += 1
                log.warning("file %s from %s does not match its digest; rejected", s.path, node_id[:8])
                self.files.discard(staged)
                continue
            stored = await self.files.async_commit(staged)
            await self.store.record_file(stored.path, stored.sha256, stored.size)
            return stored.path
        return None

    async def file_for_peer(self, digest: str) -> Path:
        """A file a peer asked for by digest; never anything outside the store."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BadRequest("bad digest")
        path = await self.store.file_by_digest(digest)
        if path is None:
            raise NotFound("no such file")
        return self.files.resolve(path)
