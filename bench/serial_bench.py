"""Serial streaming benchmark: how fast and how cheaply the host streams G-code over a pty.

A separate simulator process owns a pseudo-terminal and answers `ok` to every line at once (the
fastest possible printer, so the host is what is measured). The host side is the real
PrinterService: serial transport, protocol core, file streaming from disk. Reported per mode:
lines per second (wall clock) and host CPU microseconds per line (process CPU time of the host
process only; the simulator runs in its own process). A third row measures the protocol core
alone (no I/O) as the floor.

    python bench/serial_bench.py [--lines 20000] [--repeat 3] [--write bench/RESULTS-serial.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIMULATOR = r"""
import os, select, sys, tty
master, slave = os.openpty()
tty.setraw(slave)
print(os.ttyname(slave), flush=True)
lines = 0
partial = 0
while True:
    r, _, _ = select.select([master, sys.stdin], [], [])
    if sys.stdin in r:
        break
    try:
        data = os.read(master, 65536)
    except OSError:
        continue
    n = data.count(b"\n")
    if n:
        lines += n
        os.write(master, b"ok\n" * n)
"""


def make_file(directory: Path, count: int) -> Path:
    path = directory / "moves.gcode"
    with open(path, "w") as f:
        f.write("; 20,000 short moves\nG90\n")
        for i in range(count):
            f.write(f"G1 X{i % 100}.{i % 10} Y{(i * 7) % 100}.5 E{i * 0.01:.3f} F3000 ; move {i}\n")
    return path


async def stream_once(port: str, path: Path, pipelined: bool) -> tuple[float, float, int]:
    from lanqueue.printer import PrintDone, PrinterService, PrinterState, PrintFailed, StateChanged

    service = PrinterService(port, pipelined=pipelined)
    ready = asyncio.Event()
    done: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    def listener(event: object) -> None:
        if isinstance(event, StateChanged) and event.state is PrinterState.OPERATIONAL:
            ready.set()
        if isinstance(event, (PrintDone, PrintFailed)) and not done.done():
            done.set_result(event)

    service.add_listener(listener)
    await service.async_start()
    await asyncio.wait_for(ready.wait(), 10)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    await service.async_print_file(path, path.name)
    result = await asyncio.wait_for(done, 600)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    await service.async_close()
    lines = sum(1 for raw in path.read_text().splitlines() if raw.split(";")[0].strip())
    assert isinstance(result, PrintDone), result
    return wall, cpu, lines


def core_only(path: Path) -> tuple[float, float]:
    """The protocol core and file reader alone: answer each line with ok in the same thread."""
    from lanqueue.printer import FirmwareProtocol
    from lanqueue.printer.stream import GcodeFile

    core = FirmwareProtocol()
    core.connection_made(0.0)
    core.next_line()
    core.receive_data(b"ok\n", 0.0)
    core.next_line()
    core.receive_data(b"FIRMWARE_NAME:bench\nCap:AUTOREPORT_TEMP:1\nok\n", 0.0)
    core.next_line()
    core.receive_data(b"ok\n", 0.0)
    source = GcodeFile(path)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    core.start_print(source, str(path), path.name, 0.0)
    n = 0
    while core.state.is_printing:
        line = core.next_line()
        if line is None:
            break
        n += 1
        core.receive_data(b"ok\n", 0.0)
    return time.perf_counter() - wall0, time.process_time() - cpu0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", type=Path, default=None, help="write a markdown summary here")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = make_file(Path(tmp), args.lines)
        sim = subprocess.Popen([sys.executable, "-c", SIMULATOR], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        try:
            assert sim.stdout is not None
            port = sim.stdout.readline().strip()
            for pipelined in (False, True):
                runs = [asyncio.run(stream_once(port, path, pipelined)) for _ in range(args.repeat)]
                wall = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                lines = runs[0][2]
                rows.append(("pipelined (char counting: up to 8 lines within 127 B)" if pipelined else "classic (1 line in flight)",
                             lines / wall, cpu / lines * 1e6, wall))
        finally:
            if sim.stdin is not None:
                sim.stdin.write("q\n")
                sim.stdin.flush()
            sim.wait(5)
        core_runs = [core_only(path) for _ in range(args.repeat)]
        wall = statistics.median(r[0] for r in core_runs)
        cpu = statistics.median(r[1] for r in core_runs)
        rows.append(("protocol core alone (no I/O)", args.lines / wall, cpu / args.lines * 1e6, wall))

    header = "| mode | lines/s | host CPU µs/line | wall s |\n|---|---:|---:|---:|"
    body = "\n".join(f"| {name} | {rate:,.0f} | {cpu:.1f} | {wall:.2f} |" for name, rate, cpu, wall in rows)
    gain = rows[1][1] / rows[0][1]
    load = os.getloadavg()[0]
    env = (
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}, "
        f"load average {load:.1f} at the end (the machine is shared: figures vary with it)"
    )
    text = (
        f"{args.lines:,} short moves streamed from disk over a pty to a simulator that answers `ok` at once "
        f"(separate process); median of {args.repeat} runs. {env}.\n\n{header}\n{body}\n\n"
        f"Pipelined / classic throughput: {gain:.2f}x.\n"
    )
    print(text)
    if args.write:
        args.write.write_text("# Serial streaming benchmark\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
