"""The serial port: open it, pass bytes both ways, reopen with backoff when it goes away.

A thin adapter around `serial_asyncio_fast.create_serial_connection` (device paths, ptys and
`socket://host:port`). It knows nothing of G-code: the service hands it callbacks. Opening and
closing run off the event loop (pyserial-asyncio-fast does that), reads and writes are
non-blocking on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import serial  # type: ignore[import-untyped]
import serial_asyncio_fast

__all__ = ["SerialLink"]

_LOG = logging.getLogger(__name__)


class _PortProtocol(asyncio.Protocol):
    def __init__(self, link: SerialLink) -> None:
        self.link = link
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.link._made(transport)  # noqa: SLF001 - the link owns this protocol

    def data_received(self, data: bytes) -> None:
        self.link.on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class SerialLink:
    """Keeps one port open while `wanted`; reopens it forever, backing off up to `max_delay`."""

    def __init__(
        self,
        url: str,
        baudrate: int,
        *,
        on_open: Callable[[], None],
        on_data: Callable[[bytes], None],
        on_close: Callable[[str | None], None],
        on_open_failed: Callable[[str], None] | None = None,
        initial_delay: float = 0.5,
        max_delay: float = 10.0,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.on_open = on_open
        self.on_data = on_data
        self.on_close = on_close
        self.on_open_failed = on_open_failed
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.wanted = True
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing_on_purpose = False
        self.write: Callable[[bytes], None] = self._write_nowhere

    @staticmethod
    def _write_nowhere(data: bytes) -> None:
        return None

    @property
    def is_open(self) -> bool:
        return self._transport is not None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"serial {self.url}")

    def _made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.write = transport.write
        self.on_open()

    def drop(self) -> None:
        """Close the current connection on purpose (after M112 or a halt); the loop reopens it."""
        if self._transport is not None:
            self._closing_on_purpose = True
            self._transport.close()

    def set_wanted(self, wanted: bool) -> None:
        self.wanted = wanted
        if not wanted:
            self.drop()
        self._wake.set()

    async def _run(self) -> None:
        delay = self.initial_delay
        loop = asyncio.get_running_loop()
        while True:
            if not self.wanted:
                self._wake.clear()
                await self._wake.wait()
                delay = self.initial_delay
                continue
            proto: _PortProtocol | None = None
            try:
                _, proto_any = await serial_asyncio_fast.create_serial_connection(
                    loop, lambda: _PortProtocol(self), self.url, baudrate=self.baudrate
                )
                proto = proto_any  # type: ignore[assignment]
            except (serial.SerialException, OSError, ValueError) as e:
                if self.on_open_failed is not None:
                    self.on_open_failed(f"Cannot open {self.url}: {e}")
            if proto is not None:
                opened = loop.time()
                exc = await proto.lost
                self._transport = None
                self.write = self._write_nowhere
                on_purpose = self._closing_on_purpose
                self._closing_on_purpose = False
                self.on_close(None if on_purpose and exc is None else _reason(exc))
                if loop.time() - opened > 10 * self.initial_delay:
                    delay = self.initial_delay
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            delay = min(delay * 2, self.max_delay)

    async def close(self) -> None:
        """Stop for good; idempotent."""
        self.wanted = False
        task, self._task = self._task, None
        transport, self._transport = self._transport, None
        if transport is not None:
            self._closing_on_purpose = True
            transport.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Let the transport's background close (run in an executor) finish before the loop ends.
        if transport is not None:
            for _ in range(50):
                if getattr(transport, "_serial", None) is None:
                    break
                await asyncio.sleep(0.01)


def _reason(exc: Exception | None) -> str:
    if exc is None:
        return "The printer closed the connection"
    text = str(exc)
    if "returned no data" in text or "disconnected" in text or isinstance(exc, (OSError, serial.SerialException)):
        return f"Lost the connection to the printer (port vanished or was unplugged: {text})"
    return f"Lost the connection to the printer: {text}"
