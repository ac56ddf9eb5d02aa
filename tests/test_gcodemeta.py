"""Slicer metadata from the sample files of each slicer format (lanqueue/samples/)."""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from pathlib import Path

import aiohttp
import pytest
from conftest import CP
from hypothesis import given, settings
from hypothesis import strategies as st

from lanqueue.gcodemeta import (
    HEAD_BYTES,
    GcodeIndex,
    parse_lines,
    qoi_to_png,
    read_meta,
)
from lanqueue.model import PrintSet, set_printable

SAMPLES = Path(__file__).resolve().parent.parent / "lanqueue" / "samples"

# what each sample's comments say (read off the files), per field
EXPECTED = {
    "prusaslicer": {"slicer": "PrusaSlicer 2.7.1+linux-x64-GTK3", "estimated_time_s": 12 * 60 + 34,
                        "filament_mm": [1523.42], "filament_g": [4.54], "filament_type": ["PLA"],
                        "nozzle_diameter": 0.4, "layer_height": 0.15, "thumb": ("png", 32, 32)},
    "superslicer": {"slicer": "SuperSlicer 2.5.59.8", "estimated_time_s": 3900,
                        "filament_mm": [812.5, 640.1], "filament_g": [2.42, 1.96], "filament_type": ["PLA", "PETG"],
                        "nozzle_diameter": 0.6, "layer_height": 0.2, "thumb": ("jpg", 24, 24)},
    "orcaslicer": {"slicer": "OrcaSlicer 2.0.0", "estimated_time_s": 27 * 60 + 3,
                       "filament_mm": [975.2], "filament_g": [2.97], "filament_type": ["PETG"],
                       "nozzle_diameter": 0.4, "layer_height": 0.2, "thumb": ("png", 20, 20)},
    "bambustudio": {"slicer": "BambuStudio 01.08.04.51", "estimated_time_s": 46 * 60 + 30,
                        "filament_mm": [700.0, 300.0], "filament_g": [2.09, 0.9], "filament_type": ["PLA", "PLA"],
                        "nozzle_diameter": 0.4, "layer_height": 0.12, "thumb": ("png", 28, 28)},
    "cura": {"slicer": "Cura 5.6.0", "estimated_time_s": 1834, "filament_mm": [1123.45], "filament_g": [],
                 "filament_type": [], "nozzle_diameter": None, "layer_height": 0.16, "thumb": ("png", 18, 18)},
}


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of an 8-bit RGBA PNG without filters (what qoi_to_png writes)."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 6)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + 4 * width
    rows = [raw[y * stride:(y + 1) * stride] for y in range(height)]
    assert all(r[0] == 0 for r in rows)
    return width, height, [r[1:] for r in rows]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_slicer_format(name: str) -> None:
    meta = read_meta(SAMPLES / f"{name}.gcode")
    want = dict(EXPECTED[name])
    kind, w, h = want.pop("thumb")
    for key, value in want.items():
        assert getattr(meta, key) == value, key
    assert meta.thumbnail is not None
    assert (meta.thumbnail.kind, meta.thumbnail.width, meta.thumbnail.height) == (kind, w, h)
    magic = b"\x89PNG" if kind == "png" else b"\xff\xd8"
    assert meta.thumbnail.data.startswith(magic)


def test_qoi_thumbnail_becomes_a_png_of_the_same_picture() -> None:
    """PrusaSlicer's QOI block (32x32, a blue square on transparent) is the largest: kept as PNG."""
    meta = read_meta(SAMPLES / "prusaslicer.gcode")
    assert meta.thumbnail is not None
    width, height, rows = png_pixels(meta.thumbnail.data)
    assert (width, height) == (32, 32)
    assert rows[16][16 * 4:17 * 4] == bytes((30, 90, 220, 255))  # inside the square
    assert rows[0][0:4] == bytes((0, 0, 0, 0))  # outside


def test_qoi_every_operation() -> None:
    """One pixel per QOI operation, values worked out by hand from the specification."""
    ops = bytes([
        0xFE, 10, 20, 30,          # RGB -> (10,20,30,255)
        0x40 | (3 << 4) | (1 << 2) | 2,  # DIFF dr=+1 dg=-1 db=0 -> (11,19,30,255)
        0x80 | (32 + 5), (8 + 2) << 4 | (8 - 3),  # LUMA dg=5, dr-dg=2, db-dg=-3 -> (18,24,32,255)
        0xFF, 1, 2, 3, 4,          # RGBA -> (1,2,3,4)
        (10 * 3 + 20 * 5 + 30 * 7 + 255 * 11) % 64,  # INDEX of the first pixel -> (10,20,30,255)
        0xC0 | 1,                  # RUN of 2 -> two more of (10,20,30,255)
    ])
    data = b"qoif" + struct.pack(">II", 7, 1) + bytes([4, 0]) + ops + b"\x00" * 7 + b"\x01"
    _, _, rows = png_pixels(qoi_to_png(data))
    pixels = [tuple(rows[0][i:i + 4]) for i in range(0, 28, 4)]
    assert pixels == [(10, 20, 30, 255), (11, 19, 30, 255), (18, 24, 32, 255), (1, 2, 3, 4),
                      (10, 20, 30, 255), (10, 20, 30, 255), (10, 20, 30, 255)]


def test_qoi_garbage_is_refused() -> None:
    with pytest.raises(ValueError):
        qoi_to_png(b"qoif" + struct.pack(">II", 100000, 100000) + b"\x04\x00" + b"\x00" * 8)
    with pytest.raises(ValueError):
        qoi_to_png(b"qoif" + struct.pack(">II", 4, 4) + b"\x04\x00" + b"\xfe\x01\x02\x03" + b"\x00" * 7 + b"\x01")


def test_big_file_read_at_both_ends(tmp_path: Path) -> None:
    """Header at the head, summary at the tail of a 5 MB file; a summary line in the middle
    (never read) does not count."""
    sample = (SAMPLES / "prusaslicer.gcode").read_text()
    head, _, tail = sample.partition("; filament used [mm]")
    moves = "G1 X10 Y10 E0.1\n" * (5_000_000 // 16)
    middle = "; filament_type = NOT_READ\n"
    path = tmp_path / "big.gcode"
    path.write_text(head + moves + middle + moves + "; filament used [mm]" + tail)
    assert path.stat().st_size > 4 * HEAD_BYTES
    meta = read_meta(path)
    assert meta.filament_type == ["PLA"] and meta.filament_mm == [1523.42]
    assert meta.estimated_time_s == 754 and meta.thumbnail is not None


def test_cut_or_broken_thumbnails_are_skipped() -> None:
    lines = ["; generated by PrusaSlicer 2.7.1", "; thumbnail begin 16x16 12", "; not base64 at all!!", "; thumbnail end",
             "; thumbnail begin 16x16 8", "; iVBORw0K"]  # cut: the head ends inside the block
    meta = parse_lines(lines)
    assert meta.slicer == "PrusaSlicer 2.7.1" and meta.thumbnail is None


def test_a_file_without_slicer_comments_says_nothing() -> None:
    meta = parse_lines(["G28", "G1 X10 ; move", "; just a comment", ";TIME_ELAPSED:12"])
    assert meta.empty


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=60).map(lambda t: ";" + t) | st.text(max_size=60), max_size=30))
def test_any_lines_parse_without_error(lines: list[str]) -> None:
    meta = parse_lines(lines)
    for v in meta.filament_mm + meta.filament_g:
        assert math.isfinite(v)


async def test_index_parses_once_per_content_and_serves_views(tmp_path: Path) -> None:
    index = GcodeIndex(tmp_path / "meta")
    sha = "a" * 64
    copy = tmp_path / "part.gcode"
    copy.write_bytes((SAMPLES / "orcaslicer.gcode").read_bytes())
    await index.on_commit("part.gcode", sha, copy)
    view = index.view("part.gcode")
    assert view is not None
    assert view["filament_type"] == ["PETG"] and view["thumbnail"] == f"/lanqueue/thumbnail/{sha}.png"
    assert index.thumbnail(f"{sha}.png") == tmp_path / "meta" / f"{sha}.png"
    assert index.thumbnail("../x.png") is None and index.thumbnail(f"{'b' * 64}.png") is None
    # a new index over the same folder reads the sidecar, not the file (which is gone)
    copy.unlink()
    again = GcodeIndex(tmp_path / "meta")
    await again.async_load({"other/name.gcode": sha}, tmp_path)
    assert again.view("other/name.gcode") == view
    assert again.view("unknown.gcode") is None


# --- through a real node: upload, state/get, the thumbnail route, a restart, material matching


async def _upload(client, name: str, content: bytes):
    data = aiohttp.FormData()
    data.add_field("file", content, filename=name, content_type="application/octet-stream")
    r = await client.post("/api/files/local", data=data)
    assert r.status == 201, await r.text()


async def _gcode_of(client, path: str) -> dict | None:
    state = await (await client.get(f"{CP}/state/get")).json()
    local = next(q for q in state["queues"] if q["name"] == "local")
    return next(s["gcode"] for j in local["jobs"] for s in j["sets"] if s["path"] == path)


async def test_upload_shows_metadata_in_state_and_serves_the_thumbnail(node_factory) -> None:
    client, _ = await node_factory()
    content = (SAMPLES / "superslicer.gcode").read_bytes()
    await _upload(client, "two_tools.gcode", content)
    r = await client.post(f"{CP}/set/add", data={"path": "two_tools.gcode", "sd": "false", "job": ""})
    assert r.status == 200
    added = (await r.json())["set_"]["gcode"]
    gcode = await _gcode_of(client, "two_tools.gcode")
    assert gcode == added
    sha = hashlib.sha256(content).hexdigest()
    assert gcode == {"slicer": "SuperSlicer 2.5.59.8", "estimated_time_s": 3900, "filament_mm": [812.5, 640.1],
                     "filament_g": [2.42, 1.96], "filament_type": ["PLA", "PETG"], "nozzle_diameter": 0.6,
                     "layer_height": 0.2, "thumbnail": f"/lanqueue/thumbnail/{sha}.jpg"}
    r = await client.get(gcode["thumbnail"])
    assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert await r.read() == read_meta(SAMPLES / "superslicer.gcode").thumbnail.data
    async with aiohttp.ClientSession() as anonymous:  # no API key
        assert (await anonymous.get(client.make_url(gcode["thumbnail"]))).status == 403
    assert (await client.get(f"/lanqueue/thumbnail/{'0' * 64}.png")).status == 404
    assert (await client.get("/lanqueue/thumbnail/..%2Fapi_key")).status == 404


async def test_metadata_survives_a_restart(node_factory) -> None:
    client, _ = await node_factory()
    await _upload(client, "a.gcode", (SAMPLES / "cura.gcode").read_bytes())
    await client.post(f"{CP}/set/add", data={"path": "a.gcode", "sd": "false", "job": ""})
    before = await _gcode_of(client, "a.gcode")
    assert before is not None and before["slicer"] == "Cura 5.6.0"
    await client.close()
    client2, _ = await node_factory()  # the same data dir
    assert await _gcode_of(client2, "a.gcode") == before


def test_a_set_without_materials_needs_its_files_filament() -> None:
    meta = read_meta(SAMPLES / "superslicer.gcode").to_json()  # PLA on tool 0, PETG on tool 1
    s = PrintSet(id=1, path="x.gcode", gcode=meta)
    assert set_printable(s, "Generic", ["PLA_red_#ff0000", "PETG"])
    assert not set_printable(s, "Generic", ["PETG", "PETG"])  # tool 0 holds the wrong type
    assert set_printable(s, "Generic", [])  # nothing known loaded: the file does not stop it
    assert set_printable(s, "Generic", ["pla", None])
    named = PrintSet(id=2, path="x.gcode", gcode=meta, materials=["PETG"])
    assert set_printable(named, "Generic", ["PETG", "PLA"])  # the set's own materials win
    unused = {**meta, "filament_mm": [812.5, 0.0]}  # tool 1 configured but not extruded
    assert set_printable(PrintSet(id=3, path="x.gcode", gcode=unused), "Generic", ["PLA", "ABS"])


def test_lan_records_carry_the_metadata_through_the_peer_codec() -> None:
    """What a peer receives is what the home put in (the record's `gcode` text), and text a
    peer mangled is shown as nothing rather than breaking the view."""
    import json as _json

    from lanqueue.sync import codec
    from lanqueue.sync.records import SetRecord
    from lanqueue.sync.views import gcode_of

    view = {**read_meta(SAMPLES / "cura.gcode").to_json(), "thumbnail": "/lanqueue/thumbnail/x.png"}
    record = SetRecord(path="a.gcode", count=1, remaining=1, hash="a" * 64, gcode=_json.dumps(view))
    received = codec.loads(codec.dumps(record), SetRecord)
    assert received == record and gcode_of(received.gcode) == view
    assert gcode_of("") is None and gcode_of("[1, 2]") is None and gcode_of("{not json") is None


def test_a_lan_set_without_materials_needs_its_files_filament_too() -> None:
    import json as _json

    from lanqueue.sync.records import JobRecord, SetRecord
    from lanqueue.sync.views import printable_set

    meta = _json.dumps(read_meta(SAMPLES / "orcaslicer.gcode").to_json())  # PETG
    rec = JobRecord(id="j", queue="farm", home="me", epoch=1, version=1, name="j", count=1, remaining=1,
                    sets=(SetRecord(path="o.gcode", count=1, remaining=1, hash="a" * 64, gcode=meta),))
    assert printable_set(rec, "me", {}, "Generic", ["PETG_black"]) == 0
    assert printable_set(rec, "me", {}, "Generic", ["PLA"]) is None
    assert printable_set(rec, "me", {}, "Generic", []) == 0
