"""A Prusa MK3S firmware stand-in on a pseudo-terminal, enough for real PrusaLink 0.8.1.

    python3 tests/prusalink_printer.py LINKPATH [LOGFILE]

It makes a pty, links LINKPATH to its slave side (PrusaLink's `[printer] port`), prints
`ready` on stdout and answers every line as the firmware would: `ok`, plus the replies PrusaLink
reads while it identifies the printer (`PRUSA Fir`, `M862.x Q`, `PRUSA SN`, `D3` EEPROM reads)
and the report formats it parses (`M105`, `M114`, `M123`, `M73`, `M27`); temperatures and fans
are also reported unasked every second, as the firmware's auto-report does. Written from the
firmware's public G-code reference and from watching what PrusaLink sends; it is the project's
own (adapted from the project's feasibility probe), no firmware code.

What happens at the printer's own screen comes on stdin, one word a line:
`cancel` (Stop print in the menu: `// action:cancel`), `pause` / `resume` (`// action:pause`,
`// action:resume`: the host pauses and resumes), `fail` (a heater fault: MAXTEMP and a kill,
then the firmware restarts after `--reset-after` seconds, as a printer reset by hand does).
`M601`/`M602`/`M603` from the host reply `// action:paused|resumed|cancel`.
"""

from __future__ import annotations

import os
import re
import select
import sys
import threading
import time
import tty

EEPROM = {0x0D05: "00 00 00 07", 0x0FBB: "00", 0x0FFF: "00", 0x0DA1: "00",
          0x0FF1: "00 00 00 00", 0x0FED: "00 00 00 00", 0x0F91: "00 00 00 00"}
MOVE_DELAY = float(os.environ.get("SIM_MOVE_DELAY", "0.002"))
RESET_AFTER = float(os.environ.get("SIM_RESET_AFTER", "1.0"))


class Firmware:
    """The printer's replies; `out` writes whole lines to the host (thread-safe)."""

    def __init__(self, master: int, log: object) -> None:
        self.master, self.log = master, log
        self.lock = threading.Lock()
        self.t = {"temp_t": 0.0, "temp_b": 0.0, "x": 0.0, "y": 0.0, "z": 0.0, "e": 0.0}
        self.target_t = self.target_b = 0.0
        self.percent = -1
        self.remaining = -1
        self.halted = False

    def out(self, lines: list[str]) -> None:
        with self.lock:
            for line in lines:
                self.log.write(f"< {line}\n")  # type: ignore[attr-defined]
            os.write(self.master, ("\n".join(lines) + "\n").encode())

    def d3(self, addr: int, count: int) -> list[str]:
        if addr == 0x0D49:  # 8 steel sheets x 11 bytes: name[7] z_offset u16 bed u8 pinda u8
            hx = b"".join(f"Smooth{i}".encode()[:7] + b"\xff\xff\x3c\x23" for i in range(8)).hex()
        else:
            hx = EEPROM.get(addr, "00 " * count).replace(" ", "")
        return [f"{addr + off // 2:06x}  " + " ".join(hx[i:i + 2] for i in range(off, min(off + 32, len(hx)), 2))
                for off in range(0, len(hx), 32)]

    def reply(self, cmd: str) -> list[str]:
        t = self.t
        fixed = {"PRUSA Fir": "3.14.1-8237", "M862.2 Q": "302", "M862.1 Q": "0.40",
                 "M862.3 Q": '"MK3S"', "PRUSA SN": "CZPX1234X004XC12345",
                 "M420": "Mesh bed leveling not active.", "M220": "100%", "M221": "100%",
                 "M27": "Not SD printing", "M21": "echo:SD card ok",
                 "M123": "E0:0 RPM PRN1:0 RPM E0@:0 PRN1@:0",
                 "M601": "// action:paused", "M602": "// action:resumed", "M603": "// action:cancel"}
        for prefix, answer in fixed.items():
            if cmd.startswith(prefix):
                return [answer]
        if cmd.startswith("D3"):
            m = re.match(r"D3 Ax([0-9A-Fa-f]+) C(\d+)", cmd)
            return self.d3(int(m.group(1), 16), int(m.group(2))) if m else []
        if cmd.startswith("M20"):
            return ["Begin file list", "End file list"]
        if cmd.startswith("M73"):
            self._progress(cmd)
            return [f"{mode} MODE: Percent done: {self.percent}; print time remaining in mins: "
                    f"{self.remaining}; Change in mins: -1" for mode in ("NORMAL", "SILENT")]
        if cmd.startswith("M105"):
            return [(f"T:{t['temp_t']:.1f} /{self.target_t:.1f} B:{t['temp_b']:.1f} /{self.target_b:.1f} "
                     f"T0:{t['temp_t']:.1f} /{self.target_t:.1f} @:0 B@:0 P:25.0 A:30.0")]
        if cmd.startswith("M114"):
            p = " ".join(f"{a.upper()}:{t[a]:.2f}" for a in "xyze")
            return [f"{p} Count {p}"]
        self._motion(cmd)
        return []

    def _progress(self, cmd: str) -> None:
        p = re.search(r"P(\d+)", cmd)
        r = re.search(r"R(\d+)", cmd)
        if p:
            self.percent = int(p.group(1))
        if r:
            self.remaining = int(r.group(1))

    def _motion(self, cmd: str) -> None:
        t = self.t
        temp = re.search(r"S(\d+(\.\d+)?)", cmd)
        if cmd.startswith(("M104", "M109")) and temp:
            self.target_t = t["temp_t"] = float(temp.group(1))
        if cmd.startswith(("M140", "M190")) and temp:
            self.target_b = t["temp_b"] = float(temp.group(1))
        if re.match(r"G4\b", cmd):  # dwell: the firmware answers ok when it is over
            ms, sec = re.search(r"P(\d+)", cmd), re.search(r"S(\d+)", cmd)
            time.sleep((int(ms.group(1)) / 1000 if ms else 0) + (int(sec.group(1)) if sec else 0))
        if cmd.startswith(("G0", "G1")):
            for ax in "XYZE":
                m = re.search(ax + r"(-?\d+(\.\d+)?)", cmd)
                if m:
                    t[ax.lower()] = float(m.group(1))
            time.sleep(MOVE_DELAY)

    def screen(self, word: str) -> None:
        if word == "cancel":
            self.out(["// action:cancel"])
        elif word == "pause":
            self.out(["// action:pause"])
        elif word == "resume":
            self.out(["// action:resume"])
        elif word == "fail":
            self.halted = True
            self.out(["Error:0: Heaters switched off. MAXTEMP triggered!", "Error:Printer halted. kill() called!"])
            time.sleep(RESET_AFTER)
            self.halted = False
            self.percent = self.remaining = -1
            self.out(["start"])


def main() -> None:
    link = sys.argv[1]
    log = open(sys.argv[2] if len(sys.argv) > 2 else os.devnull, "a", buffering=1)  # noqa: SIM115
    master, slave = os.openpty()
    tty.setraw(slave)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.ttyname(slave), link)
    fw = Firmware(master, log)

    def screen() -> None:
        for line in sys.stdin:
            if line.strip():
                fw.screen(line.strip())

    threading.Thread(target=screen, daemon=True).start()
    fw.out(["start"])
    print("ready", flush=True)
    buf = b""
    reported = time.monotonic()
    while True:
        if time.monotonic() - reported >= 1.0 and not fw.halted:
            # the firmware reports temperatures and fans by itself every second (as with M155
            # S1), from its main loop: never between a command and its reply
            fw.out(fw.reply("M105") + fw.reply("M123"))
            reported = time.monotonic()
        if not select.select([master], [], [], 0.2)[0]:
            continue
        data = os.read(master, 4096)
        if not data:
            break
        buf += data
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            log.write(f"> {line}\n")
            if fw.halted:
                continue  # a killed firmware answers nothing until it is reset
            m = re.match(r"^N(-?\d+)\s+(.*?)\*(\d+)$", line)
            cmd = (m.group(2) if m else line).strip()
            fw.out(fw.reply(cmd) + ["ok"])


if __name__ == "__main__":
    main()
