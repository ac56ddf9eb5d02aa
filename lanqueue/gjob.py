"""The `.gjob` format of Continuous Print: a zip holding a job's G-code files and `manifest.json`.

The manifest describes the job (name, count, sets with their file names and counts) so a job can
move between printers as one file. Reading is defensive: names inside the zip are sanitised like
uploads, sizes are bounded (zip bombs), and the manifest is validated before anything is written.
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadRequest
from .files import ALLOWED_SUFFIXES, sanitize_path
from .model import Job

__all__ = ["write_gjob", "read_gjob", "read_gjob_manifest", "read_member", "GjobContent", "MANIFEST"]

MANIFEST = "manifest.json"
MAX_MANIFEST = 1 << 20
MAX_MEMBERS = 256
PRINTABLE_SUFFIXES = tuple(s for s in ALLOWED_SUFFIXES if s != ".gjob")


@dataclass(frozen=True)
class GjobContent:
    name: str
    count: int
    sets: list[dict[str, Any]]  # path (inside the zip), count, materials, profiles, metadata


def write_gjob(job: Job, files_root: Path, target: Path) -> None:
    """Write `job` and its files (paths relative to `files_root`) to the zip `target`."""
    manifest = {
        "version": 1,
        "name": job.name,
        "count": job.count,
        "sets": [
            {
                "path": s.path,
                "count": s.count,
                "materials": s.materials,
                "profiles": s.profiles,
                "metadata": s.metadata,
            }
            for s in job.sets
        ],
    }
    tmp = target.with_suffix(".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, json.dumps(manifest, indent=2))
        for s in job.sets:
            if s.path not in z.namelist():
                z.write(files_root / s.path, arcname=s.path)
    tmp.replace(target)


def read_gjob_manifest(path: Path, max_total: int) -> tuple[GjobContent, zipfile.ZipFile]:
    """Open and validate a `.gjob`; the caller extracts members with `extract_member`."""
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise BadRequest(f"{path.name} is not a valid .gjob (zip) file") from None
    infos = z.infolist()
    if len(infos) > MAX_MEMBERS or sum(i.file_size for i in infos) > max_total:
        z.close()
        raise BadRequest(".gjob has too many or too large members")
    unsafe = [i.filename for i in infos if not _safe_member(i.filename)]
    if unsafe:
        z.close()
        raise BadRequest(f".gjob holds unsafe file names: {unsafe[:3]!r}")
    if MANIFEST not in z.namelist():
        z.close()
        raise BadRequest(".gjob has no manifest.json")
    try:
        raw = read_member(z, MANIFEST)
    except BadRequest:
        z.close()
        raise
    try:
        if len(raw) > MAX_MANIFEST:
            raise ValueError("manifest too large")
        doc = json.loads(raw)
        content = _validate(doc, set(z.namelist()))
    except (ValueError, TypeError, KeyError, RecursionError, BadRequest) as e:
        z.close()
        raise BadRequest(f".gjob manifest is invalid: {e}") from None
    return content, z


def read_gjob(path: Path, max_total: int) -> tuple[GjobContent, list[bytes]]:
    """The validated manifest and the bytes of each set's file, in set order (blocking)."""
    content, archive = read_gjob_manifest(path, max_total)
    with archive:
        return content, [read_member(archive, s["path"]) for s in content.sets]


def _safe_member(name: str) -> bool:
    """Zip member names are refused, not repaired, when they could point outside a folder."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name or re.match(r"^[A-Za-z]:", name):
        return False
    return not any(part in ("..", ".") for part in name.split("/"))


def read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    """One member's bytes; a corrupt member (bad CRC, bad deflate stream) is a BadRequest."""
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as e:
        raise BadRequest(f".gjob member {name!r} cannot be read: {e}") from None


def _validate(doc: Any, members: set[str]) -> GjobContent:
    if not isinstance(doc, dict) or not isinstance(doc.get("sets"), list):
        raise ValueError("expected an object with a list of sets")
    name = doc.get("name") or "Imported job"
    count = doc.get("count", 1)
    if not isinstance(name, str) or len(name) > 1000 or not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 100_000:
        raise ValueError("bad name or count")
    sets = []
    for s in doc["sets"]:
        if not isinstance(s, dict) or not isinstance(s.get("path"), str):
            raise ValueError("each set needs a path")
        if s["path"] not in members:
            raise ValueError(f"file {s['path']!r} is not in the archive")
        scount = s.get("count", 1)
        if not isinstance(scount, int) or isinstance(scount, bool) or not 0 <= scount <= 100_000:
            raise ValueError("bad set count")
        materials = s.get("materials") or []
        profiles = s.get("profiles") or []
        if not isinstance(materials, list) or not all(m is None or isinstance(m, str) for m in materials):
            raise ValueError("materials must be a list of strings")
        if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
            raise ValueError("profiles must be a list of strings")
        safe_path = sanitize_path(s["path"].rsplit("/", 1)[-1])
        if not safe_path.lower().endswith(PRINTABLE_SUFFIXES):
            raise ValueError(f"{s['path']!r} is not a G-code file")
        sets.append(
            {
                "path": s["path"],
                "safe_path": safe_path,
                "count": scount,
                "materials": materials,
                "profiles": profiles,
                "metadata": s.get("metadata"),
            }
        )
    return GjobContent(name=name, count=count, sets=sets)
