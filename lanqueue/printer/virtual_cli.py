"""`lanqueue virtual-printer` (and `python -m lanqueue.printer`): a virtual printer on a pty,
its path printed, with fault injection from the command line."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from .virtual import Faults
from .virtual_pty import run_virtual_printer_on_pty

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """`lanqueue virtual-printer`: serve a virtual printer on a pty and print its path."""
    import argparse

    parser = argparse.ArgumentParser(prog="lanqueue virtual-printer", description=main.__doc__)
    parser.add_argument("--speed", type=float, default=1.0, help="times faster than real time")
    parser.add_argument("--sd-dir", type=Path, default=None, help="folder served as the SD card")
    faults = parser.add_argument_group("fault injection (seeded, per line or command)")
    faults.add_argument("--seed", type=int, default=0)
    faults.add_argument("--corrupt-rate", type=float, default=0.0, help="lines arriving with a flipped bit")
    faults.add_argument("--drop-rate", type=float, default=0.0, help="lines lost on the wire")
    faults.add_argument("--lost-ok-rate", type=float, default=0.0, help="oks never sent")
    faults.add_argument("--busy-rate", type=float, default=0.0, help="commands that keep it busy for 5 s")
    faults.add_argument("--no-ok-after-resend", action="store_true", help="firmware sends no ok after Resend")
    faults.add_argument("--storm-rate", type=float, default=0.0, help="lines that start a resend storm (5 refused lines)")
    once = parser.add_argument_group("one-time faults (after N commands of a connection)")
    once.add_argument("--reset-after", type=int, metavar="N", help="the board resets")
    once.add_argument("--thermal-runaway-after", type=int, metavar="N", help="thermal runaway: the firmware halts")
    once.add_argument("--disconnect-after", type=int, metavar="N", help="the port vanishes (USB unplugged)")
    args = parser.parse_args(argv)
    injected = Faults(
        seed=args.seed,
        corrupt_rate=args.corrupt_rate,
        drop_rate=args.drop_rate,
        lost_ok_rate=args.lost_ok_rate,
        busy_rate=args.busy_rate,
        no_ok_after_resend=args.no_ok_after_resend,
        storm_rate=args.storm_rate,
        reset_after=args.reset_after,
        thermal_runaway_after=args.thermal_runaway_after,
        disconnect_after=args.disconnect_after,
    )

    async def serve() -> None:
        server = await run_virtual_printer_on_pty(args.speed, sd_dir=args.sd_dir, faults=injected)
        print(server.path, flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
