"""The file store: sanitised names, no escape, atomic size-limited uploads."""

from __future__ import annotations

import hashlib

import pytest

from lanqueue.errors import BadRequest, PayloadTooLarge
from lanqueue.files import FileStore, UnsupportedFileType, sanitize_path


async def chunks(*parts: bytes):
    for p in parts:
        yield p


@pytest.mark.parametrize("raw", ["../x.gcode", "a/../../x.gcode", "/etc/passwd", "C:/x.gcode", "a\\b.gcode", "", "x\x00.gcode", "./.", ".hidden.gcode"])
def test_traversal_and_junk_are_refused(raw):
    with pytest.raises(BadRequest):
        sanitize_path(raw)


def test_names_are_cleaned():
    assert sanitize_path("my part (v2).gcode") == "my_part_(v2).gcode"
    assert sanitize_path("folder/sub/a.gcode") == "folder/sub/a.gcode"


async def test_save_hashes_and_places_file(tmp_path):
    fs = FileStore(tmp_path / "files", max_size=1000)
    stored = await fs.save("d/a.gcode", chunks(b"G28\n", b"G1 X1\n"))
    assert stored.sha256 == hashlib.sha256(b"G28\nG1 X1\n").hexdigest() and stored.size == 10
    assert fs.resolve("d/a.gcode").read_bytes() == b"G28\nG1 X1\n"
    assert [f.path for f in fs.list()] == ["d/a.gcode"]


async def test_oversized_upload_leaves_nothing(tmp_path):
    fs = FileStore(tmp_path / "files", max_size=5)
    with pytest.raises(PayloadTooLarge):
        await fs.save("a.gcode", chunks(b"1234", b"5678"))
    assert fs.list() == [] and not fs.exists("a.gcode")


async def test_only_gcode_and_gjob(tmp_path):
    fs = FileStore(tmp_path / "files", max_size=100)
    with pytest.raises(UnsupportedFileType):
        await fs.save("evil.sh", chunks(b"rm -rf /"))


def test_symlink_escape_is_refused(tmp_path):
    root = tmp_path / "files"
    fs = FileStore(root, max_size=100)
    (tmp_path / "outside.gcode").write_text("secret")
    (root / "link.gcode").symlink_to(tmp_path / "outside.gcode")
    with pytest.raises(BadRequest):
        fs.resolve("link.gcode")
