"""The transport and the file streamer: socket:// ports, ports that appear late, big files."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lanqueue.errors import NotFound
from lanqueue.printer import (
    PrintDone,
    PrinterEvent,
    PrinterService,
    PrinterState,
    StateChanged,
    Timeouts,
    VirtualMarlin,
    VirtualPrinterPty,
)
from lanqueue.printer.stream import GcodeFile

FAST = Timeouts(handshake=1.0, communication=1.0, communication_busy=1.0, resend_grace=0.05)



@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every test leaves the loop as it found it: no background task outlives its service."""
    yield
    for _ in range(3):
        await asyncio.sleep(0)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert others == []

async def wait_state(service: PrinterService, state: PrinterState, timeout: float = 20.0) -> None:
    changed = asyncio.Event()

    def on_event(event: PrinterEvent) -> None:
        if isinstance(event, StateChanged):
            changed.set()

    remove = service.add_listener(on_event)
    try:
        async with asyncio.timeout(timeout):
            while service.state is not state:
                changed.clear()
                await changed.wait()
    finally:
        remove()


class TcpPrinter(asyncio.Protocol):
    """A virtual Marlin behind a TCP socket (a printer on a serial-to-network bridge)."""

    def __init__(self, model: VirtualMarlin) -> None:
        self.model = model
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.model.power_on(self.loop.time())
        self.flush()

    def data_received(self, data: bytes) -> None:
        self.model.receive(data, self.loop.time())
        self.flush()

    def flush(self) -> None:
        out = self.model.take_output()
        if out and self.transport is not None:
            self.transport.write(out)
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.model.next_deadline()
        if deadline is not None:
            self.timer = self.loop.call_at(max(deadline, self.loop.time() + 0.001), self.on_timer)

    def on_timer(self) -> None:
        self.model.tick(self.loop.time())
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None


async def test_socket_url_port(tmp_path: Path) -> None:
    model = VirtualMarlin(speed=10_000)
    server = await asyncio.get_running_loop().create_server(lambda: TcpPrinter(model), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    service = PrinterService(f"socket://127.0.0.1:{port}", timeouts=FAST, reconnect_delay=0.05)
    done = asyncio.get_running_loop().create_future()
    service.add_listener(lambda e: done.set_result(e) if isinstance(e, PrintDone) and not done.done() else None)
    try:
        await service.async_start()
        await wait_state(service, PrinterState.OPERATIONAL)
        path = tmp_path / "net.gcode"
        commands = [f"G1 X{i % 10} F6000" for i in range(500)]
        path.write_text("\n".join(commands) + "\n")
        await service.async_print_file(path, "net")
        await asyncio.wait_for(done, 20)
        assert [c for c in model.executed if c.startswith("G1")] == commands
    finally:
        await service.async_close()
        server.close()
        await server.wait_closed()


async def test_port_that_appears_later_is_picked_up(tmp_path: Path) -> None:
    service = PrinterService(str(tmp_path / "ttyVIRTUAL"), timeouts=FAST, reconnect_delay=0.05, max_reconnect_delay=0.2)
    printer: VirtualPrinterPty | None = None
    try:
        failed = asyncio.get_running_loop().create_future()
        service.add_listener(
            lambda e: failed.set_result(e) if isinstance(e, StateChanged) and e.error and not failed.done() else None
        )
        await service.async_start()
        event = await asyncio.wait_for(failed, 10)
        assert event.state is PrinterState.OFFLINE and "Cannot open" in event.error
        assert service.state is PrinterState.OFFLINE and service.error == event.error
        # Plug the printer in: the service finds it on its own.
        printer = VirtualPrinterPty(VirtualMarlin(speed=1000), link_dir=tmp_path)
        await printer.start()
        await wait_state(service, PrinterState.OPERATIONAL)
        await service.async_run_script("M117 hello")
        assert printer.model.executed[-1] == "M117 hello"
    finally:
        await service.async_close()
        if printer is not None:
            await printer.close()


async def test_missing_file_is_not_found() -> None:
    service = PrinterService("virtual", virtual_speed=1000, timeouts=FAST)
    try:
        await service.async_start()
        await wait_state(service, PrinterState.OPERATIONAL)
        with pytest.raises(NotFound):
            await service.async_print_file(Path("/nonexistent/file.gcode"), "x")
        assert service.state is PrinterState.OPERATIONAL
    finally:
        await service.async_close()


def test_big_files_stream_with_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.gcode"
    block = "".join(f"G1 X{i % 200}.{i % 10} Y{i % 150}.25 E{i}.125 F1800 ; extrude\n\n" for i in range(10_000))
    with open(path, "w") as f:
        for _ in range(10):  # ~5.5 MB, 100,000 commands
            f.write(block)
    tracemalloc.start()
    try:
        source = GcodeFile(path)
        count = 0
        while source.next_command() is not None:
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert source.position == path.stat().st_size
    assert peak < 2_000_000  # the read buffer, not the file
