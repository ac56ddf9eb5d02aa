"""Slicer metadata of big files: time and memory of one parse as the file grows.

    python bench/gcodemeta_bench.py                 # 1, 10 and 100 MB files made from a sample
    python bench/gcodemeta_bench.py --sizes 1,10

Each file is a shipped sample (lanqueue/samples/prusaslicer.gcode: thumbnails at the head, the
summary and config at the tail) with moves added in the middle until it has the size. Measured:
the wall time of `read_meta` (best of --repeat, page cache warm) and the peak of Python
allocations during it (tracemalloc). The parse reads the first MiB and the last 256 KiB, so both
should stay flat as the file grows; the ratios to the smallest file are printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

from lanqueue.gcodemeta import read_meta

SAMPLE = Path(__file__).resolve().parent.parent / "lanqueue" / "samples" / "prusaslicer.gcode"


def make(path: Path, megabytes: int) -> None:
    text = SAMPLE.read_text()
    head, _, tail = text.partition("; filament used [mm]")
    move = b"G1 X120.5 Y80.25 E0.04210 F2400\n"
    with open(path, "wb") as f:
        f.write(head.encode())
        block = move * (1 << 15)
        left = megabytes * (1 << 20) - len(head) - len(tail)
        while left > 0:
            f.write(block[:left])
            left -= len(block)
        f.write(("; filament used [mm]" + tail).encode())


def measure(path: Path, repeat: int) -> tuple[float, int]:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        meta = read_meta(path)
        best = min(best, time.perf_counter() - t0)
        assert meta.filament_type == ["PLA"] and meta.thumbnail is not None
    tracemalloc.start()
    read_meta(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,10,100", help="file sizes in MB")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mb in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"{mb}.gcode"
            make(path, mb)
            best, peak = measure(path, args.repeat)
            rows.append((mb, best, peak))
            path.unlink()
    first = rows[0]
    print("| file | parse (best) | peak Python memory | time vs first | memory vs first |")
    print("|---|---|---|---|---|")
    for mb, best, peak in rows:
        print(f"| {mb} MB | {best * 1000:.1f} ms | {peak / 1024:.0f} KiB | x{best / first[1]:.2f} | x{peak / first[2]:.2f} |")


if __name__ == "__main__":
    main()
