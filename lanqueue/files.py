"""The node's file store: uploaded G-code and `.gjob` files under one folder of the data dir.

Names from clients are sanitised and can never leave the store (no `..`, no absolute paths, no
drive letters or backslashes). Uploads stream to a temporary file while their sha256 is computed,
are fsynced and renamed into place, so a file is either complete and recorded or absent: a
crash or an oversized upload leaves nothing behind. The digest lets LAN peers fetch and verify
files by content.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import BadRequest, Conflict, LanqueueError, NotFound, PayloadTooLarge
from .gcodemeta import GcodeIndex

__all__ = ["FileStore", "StoredFile", "StagedFile", "UnsupportedFileType", "sanitize_path", "ALLOWED_SUFFIXES"]

ALLOWED_SUFFIXES = (".gcode", ".gco", ".g", ".gjob")
_UNSAFE = re.compile(r"[^A-Za-z0-9._\-+()]")
MAX_PATH_LEN = 255
# a path sanitize_path would return unchanged: safe components, none starting with a dot
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_\-+()][A-Za-z0-9._\-+()]*(?:/[A-Za-z0-9_\-+()][A-Za-z0-9._\-+()]*)*\Z")


class UnsupportedFileType(LanqueueError):
    http_status = 415


@dataclass(frozen=True)
class StoredFile:
    path: str
    size: int
    sha256: str


def sanitize_path(raw: str) -> str:
    """Turn a client-supplied path into a safe relative POSIX path inside the store.

    Spaces become underscores and other unusual characters are dropped (OctoPrint does much the
    same), but traversal is refused outright rather than repaired: a client that sends `..` is
    wrong, and silently writing somewhere else would hide it.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise BadRequest("a file path is required")
    if "\x00" in raw or "\\" in raw or re.match(r"^[A-Za-z]:", raw):
        raise BadRequest(f"invalid file path {raw!r}")
    if raw.startswith("/"):
        raise BadRequest(f"absolute paths are not allowed: {raw!r}")
    parts = []
    for part in PurePosixPath(raw).parts:
        if part in ("..", "."):
            raise BadRequest(f"path may not contain {part!r}: {raw!r}")
        clean = _UNSAFE.sub("", part.replace(" ", "_"))
        if not clean or clean.startswith("."):
            raise BadRequest(f"invalid path component {part!r}")
        parts.append(clean)
    path = "/".join(parts)
    if not path:
        raise BadRequest(f"invalid file path {raw!r}")
    if len(path) > MAX_PATH_LEN:
        raise BadRequest("file path too long")
    return path


@dataclass(frozen=True)
class StagedFile:
    """An upload written and synced to the store's temporary folder, not yet in place."""

    path: str
    size: int
    sha256: str
    tmp: Path


class FileStore:
    """Files on disk under `root`; the caller records (path, digest, size) in the Store."""

    def __init__(self, root: Path, max_size: int, meta_dir: Path | None = None) -> None:
        self.root = root
        # slicer metadata of the stored files, parsed as each file enters (None: not kept)
        self.meta = GcodeIndex(meta_dir) if meta_dir is not None else None
        self._root_text = str(root.resolve())
        self.max_size = max_size
        self.generation = 0  # bumped when a file appears or goes (views cache by it)
        self._tmp = root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.iterdir():  # half-written uploads of a crashed run
            leftover.unlink(missing_ok=True)

    def resolve(self, path: str) -> Path:
        """The absolute location of a stored file; NotFound if it is not there."""
        full = self.location(sanitize_path(path))
        if not full.is_file():
            raise NotFound(f"no file {path!r}")
        return full

    def location(self, safe_path: str) -> Path:
        full = (self.root / safe_path).resolve()
        if not full.is_relative_to(self.root.resolve()) or full == self.root.resolve():
            raise BadRequest(f"path escapes the file store: {safe_path!r}")
        return full

    def gcode(self, path: str) -> dict[str, Any] | None:
        """What the slicer wrote about the file at `path` (the `"gcode"` entry of its sets)."""
        return self.meta.view(path) if self.meta is not None else None

    def exists(self, path: str) -> bool:
        """Whether a file is stored at `path`. Called for every set of every state view and
        driver look, so it avoids `resolve()`: a sanitised path has no `..` and is relative, and
        the store holds no symlinks, so joining it to the root cannot leave the store."""
        if len(path) > MAX_PATH_LEN or not _PLAIN_PATH.match(path):
            try:  # not already in the store's own spelling: spell it so first
                path = sanitize_path(path)
            except LanqueueError:
                return False
        return os.path.isfile(os.path.join(self._root_text, path))

    async def save(self, path: str, chunks: AsyncIterator[bytes]) -> StoredFile:
        """Stream `chunks` into the store at `path`; PayloadTooLarge past the size limit."""
        return await self.async_commit(await self.stage(path, chunks))

    async def async_commit(self, staged: StagedFile) -> StoredFile:
        """`commit`, then the folder's entry is synced too (off the loop): once the caller
        acknowledges the upload, even a power cut cannot undo the rename. The slicer's metadata
        is read from the staged copy first, so whoever sees the file (the generation moves on
        at the rename) sees its metadata too."""
        if self.meta is not None and staged.path.lower().endswith((".gcode", ".gco", ".g")):
            await self.meta.on_commit(staged.path, staged.sha256, staged.tmp)
        stored = self.commit(staged)
        folder = self.location(stored.path).parent
        await asyncio.get_running_loop().run_in_executor(None, _sync_dir, folder)
        return stored

    def commit(self, staged: StagedFile) -> StoredFile:
        """Move a staged file into place (atomic rename); it replaces a file of the same path."""
        target = self.location(staged.path)
        try:
            self._check_target(target)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged.tmp, target)
                self.generation += 1
            except (FileExistsError, NotADirectoryError, IsADirectoryError):  # raced a folder/file
                raise Conflict(f"{staged.path!r} clashes with a file or folder of the same name") from None
        finally:
            staged.tmp.unlink(missing_ok=True)
        return StoredFile(staged.path, staged.size, staged.sha256)

    def _check_target(self, target: Path) -> None:
        """A file cannot be stored where a folder is, nor below a file."""
        if target.is_dir():
            raise Conflict(f"{target.relative_to(self.root.resolve())} is a folder")
        for parent in target.parents:
            if parent == self.root.resolve():
                break
            if parent.exists() and not parent.is_dir():
                raise Conflict(f"{parent.relative_to(self.root.resolve())} is a file, not a folder")

    def discard(self, staged: StagedFile) -> None:
        staged.tmp.unlink(missing_ok=True)

    async def stage(self, path: str, chunks: AsyncIterator[bytes]) -> StagedFile:
        """Stream `chunks` to a synced temporary file, not yet visible in the store: a request
        that turns out bad after its file part can still `discard` it and change nothing."""
        safe = sanitize_path(path)
        if not safe.lower().endswith(ALLOWED_SUFFIXES):
            raise UnsupportedFileType(
                f"only {', '.join(ALLOWED_SUFFIXES)} files are accepted, not {safe!r}"
            )
        self._check_target(self.location(safe))  # before any byte is written
        tmp = self._tmp / secrets.token_hex(8)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_size:
                        raise PayloadTooLarge(
                            f"file larger than the limit of {self.max_size} bytes"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                await asyncio.get_running_loop().run_in_executor(None, _flush_and_sync, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StagedFile(safe, size, digest.hexdigest(), tmp)

    def delete(self, path: str) -> str:
        full = self.resolve(path)
        full.unlink()
        self.generation += 1
        return sanitize_path(path)

    def list(self) -> list[StoredFile]:
        """Files on disk (digests come from the Store; here only path and size)."""
        out = []
        for p in sorted(self.root.rglob("*")):
            if p.is_file() and not p.is_relative_to(self._tmp):
                out.append(StoredFile(p.relative_to(self.root).as_posix(), p.stat().st_size, ""))
        return out


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flush_and_sync(f: object) -> None:
    f.flush()  # type: ignore[attr-defined]
    os.fsync(f.fileno())  # type: ignore[attr-defined]


async def sha256_of(path: Path) -> str:
    """Hash a file off the event loop (files can be hundreds of MB)."""

    def work() -> str:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    return await asyncio.get_running_loop().run_in_executor(None, work)
