"""A virtual printer on a pseudo-terminal: `VirtualPrinterPty` serves a `VirtualMarlin` (the model,
virtual.py) inside the running asyncio loop, so the serial driver talks to it through a real pty
as it would to a USB board; a host that closes and reopens the port resets the board, as DTR
does on real USB boards.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tempfile
import tty
from pathlib import Path

from .virtual import Faults, VirtualMarlin

__all__ = ["VirtualPrinterPty", "run_virtual_printer_on_pty"]


class VirtualPrinterPty:
    """Serves a VirtualMarlin on a pseudo-terminal in the running asyncio loop.

    `path` is a symlink (like /dev/serial/by-id/...) that always points at the current pty, so a
    simulated unplug (new pty) looks to the host like the same port coming back.
    """

    def __init__(self, model: VirtualMarlin, *, link_dir: Path | None = None, replug_delay: float = 0.5) -> None:
        self.model = model
        self.replug_delay = replug_delay
        self._tmp = None
        if link_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="lanqueue-vp-")
            link_dir = Path(self._tmp.name)
        self.path = str(Path(link_dir) / "ttyVIRTUAL")
        self._master: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._hangup_poll: asyncio.TimerHandle | None = None
        self._host_open = False
        self._pending = bytearray()
        self._closed = False

    @property
    def pty_path(self) -> str:
        return os.path.realpath(self.path)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._open_pty()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        name = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        self._host_open = False
        tmp = self.path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(name, tmp)
        os.replace(tmp, self.path)
        self._wait_for_host()

    def _wait_for_host(self) -> None:
        """Until the host opens the slave, reads give EIO; poll instead of spinning on add_reader."""
        assert self._loop is not None
        self._hangup_poll = None
        if self._closed or self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            data = b""
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            self._hangup_poll = self._loop.call_later(0.01, self._wait_for_host)
            return
        # The host opened the port: like DTR on a USB board, that resets the firmware.
        self._host_open = True
        now = self._loop.time()
        self.model.power_on(now)
        self._loop.add_reader(self._master, self._on_readable)
        if data:
            self.model.receive(data, now)
        self._flush()

    def _on_readable(self) -> None:
        assert self._loop is not None and self._master is not None
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # host closed its end
            self._loop.remove_reader(self._master)
            self._host_open = False
            self._hangup_poll = self._loop.call_later(0.01, self._wait_for_host)
            return
        self.model.receive(data, self._loop.time())
        self._flush()

    def _flush(self) -> None:
        assert self._loop is not None
        model = self.model
        if model.disconnect_requested:
            model.disconnect_requested = False
            self._unplug()
            return
        out = model.take_output()
        if out:
            self._pending += out
        if self._pending and self._master is not None and self._host_open:
            try:
                written = os.write(self._master, self._pending)
                del self._pending[:written]
            except BlockingIOError:
                pass
            except OSError:
                self._pending.clear()
        self._schedule()

    def _schedule(self) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closed:
            return
        deadline = self.model.next_deadline()
        if self._pending:
            deadline = self._loop.time() + 0.005 if deadline is None else min(deadline, self._loop.time() + 0.005)
        if deadline is not None:
            self._timer = self._loop.call_at(max(deadline, self._loop.time() + 0.0002), self._on_timer)

    def request_action(self, name: str) -> None:
        """Press a button on the virtual printer's screen (`//action:<name>` to the host)."""
        self.model.request_action(name)
        if self._loop is not None:
            self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        assert self._loop is not None
        self.model.tick(self._loop.time())
        self._flush()

    def _close_master(self) -> None:
        assert self._loop is not None
        if self._hangup_poll is not None:
            self._hangup_poll.cancel()
            self._hangup_poll = None
        if self._master is not None:
            if self._host_open:
                self._loop.remove_reader(self._master)
            os.close(self._master)
            self._master = None
        self._host_open = False
        self._pending.clear()

    def _unplug(self) -> None:
        """USB cable pulled: the pty disappears; it comes back as a new pty after replug_delay."""
        assert self._loop is not None
        self._close_master()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(self.replug_delay, self._replug)

    def _replug(self) -> None:
        self._timer = None
        if not self._closed:
            self._open_pty()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._loop is not None:
            self._close_master()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._tmp is not None:
            self._tmp.cleanup()


async def run_virtual_printer_on_pty(
    speed: float = 1.0,
    *,
    sd_dir: Path | None = None,
    faults: Faults | None = None,
    link_dir: Path | None = None,
) -> VirtualPrinterPty:
    """Start a virtual printer on a new pty in the running loop; its `path` is the port to open."""
    server = VirtualPrinterPty(VirtualMarlin(speed=speed, sd_dir=sd_dir, faults=faults), link_dir=link_dir)
    await server.start()
    return server
