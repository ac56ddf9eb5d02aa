"""A Bambu Lab printer in LAN mode, stand-in for tests (the printer itself cannot run here).

Written from the public notes on the LAN protocol (the community's OpenBambuAPI documents and
the behaviour the reference notes describe), not from any firmware or client code. Run as its
own process:

    python3 tests/bambu_printer.py --serial SN --mqtt-port P --ftp-port F --cafile CA \
        --cert C --key K --sdcard DIR [--access-code CODE] [--start-lag S] [--lines-per-second N]

What it does, as a printer does:
- its files: an implicit-FTPS server (TLS from the first byte, user `bblp`, password = access
  code) with the SD card at `--sdcard`, made with pyftpdlib + pyOpenSSL;
- its reports: an MQTT client of the broker (a real mosquitto the test started; on a printer
  the broker is built in) publishing `device/SN/report` JSON: `print.gcode_state` (IDLE,
  PREPARE, RUNNING, PAUSE, FINISH, FAILED), `mc_percent`, `mc_remaining_time`, `gcode_file`,
  `subtask_name`, temperatures, `print_error`, `nozzle_diameter`, and the AMS trays
  (`ams.ams[].tray[]` with `tray_type` and `tray_color`). Periodic reports carry only what
  changed (as P1 printers do); a `pushing.pushall` request gets the whole state;
- its commands on `device/SN/request`: `print.project_file` (a `.3mf` on the card whose
  `param` names the plate's G-code inside it; `url` `file:///sdcard/NAME` or `ftp://NAME`),
  `print.pause`, `print.resume`, `print.stop`. The state lags `--start-lag` seconds behind a
  start, as on the real printers (the previous FINISH/IDLE stays reported meanwhile);
- `G4 P<ms>`/`S<s>` dwells; `M400 U1` pauses until resumed (the one user wait Bambu firmware has).

The test steers what happens at the printer's own screen through stdin, one word a line:
`fail` (a printer error: FAILED with a nonzero `print_error`), `cancel` (stop pressed on the
screen: FAILED with the "task cancelled" error code), `pause`, `resume`, `quiet` / `loud`
(stop / resume publishing, the printer dropping off the network while it keeps printing).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.servers import FTPServer

CANCELLED_ERROR = 50348044  # 0x0300400C: "the task was cancelled" in Bambu's HMS codes
FAILED_ERROR = 50364437  # 0x03008015: a print failure (here: the one the test injects)
AMS_TRAYS = [("PLA", "FF0000FF"), ("PETG", "00AE42FF"), ("PLA", "000000FF"), ("", "")]


class ImplicitTLSHandler(TLS_FTPHandler):
    """FTPS with TLS from the first byte (a printer's port 990), not AUTH TLS on a plain one."""

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:
        super().__init__(conn, server, ioloop)
        if self.connected:
            self.secure_connection(self.ssl_context)


def start_ftps(port: int, root: Path, code: str, cert: str, key: str) -> FTPServer:
    auth = DummyAuthorizer()
    auth.add_user("bblp", code, str(root), perm="elradfmwMT")
    ImplicitTLSHandler.authorizer = auth
    ImplicitTLSHandler.certfile, ImplicitTLSHandler.keyfile = cert, key
    ImplicitTLSHandler.tls_control_required = True
    ImplicitTLSHandler.tls_data_required = True
    ImplicitTLSHandler.masquerade_address = "127.0.0.1"
    server = FTPServer(("127.0.0.1", port), ImplicitTLSHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Printer:
    """The printer's state and its print; every method runs under `lock`."""

    def __init__(self, sdcard: Path, start_lag: float, lines_per_second: float) -> None:
        self.sdcard = sdcard
        self.start_lag = start_lag
        self.rate = lines_per_second
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {
            "command": "push_status", "msg": 0, "gcode_state": "IDLE", "mc_percent": 0,
            "mc_remaining_time": 0, "gcode_file": "", "subtask_name": "", "print_error": 0,
            "nozzle_temper": 25.0, "nozzle_target_temper": 0.0, "bed_temper": 25.0,
            "bed_target_temper": 0.0, "nozzle_diameter": "0.4", "nozzle_type": "hardened_steel",
            "layer_num": 0, "total_layer_num": 0,
            "ams": {"ams": [{"id": "0", "humidity": "4", "temp": "25.0", "tray": [
                {"id": str(i), "tray_type": t, "tray_color": c} for i, (t, c) in enumerate(AMS_TRAYS)
            ]}], "tray_now": "255"},
        }
        self.changed: dict[str, Any] = {}
        self.lines: list[str] = []
        self.pos = 0.0
        self.pending: tuple[float, str, list[str], str] | None = None  # (due, file, lines, task)
        self.user_wait = False
        self.dwell = 0.0

    def set(self, **values: Any) -> None:
        for k, v in values.items():
            if self.state.get(k) != v:
                self.state[k] = v
                self.changed[k] = v

    # --- commands (from MQTT or the screen) -------------------------------------------------
    def command(self, req: dict[str, Any], now: float) -> None:
        cmd = req.get("command")
        if cmd == "project_file":
            self._project_file(req, now)
        elif cmd == "pause" and self.state["gcode_state"] == "RUNNING":
            self.set(gcode_state="PAUSE")
        elif cmd == "resume" and self.state["gcode_state"] == "PAUSE":
            self.user_wait = False
            self.set(gcode_state="RUNNING")
        elif cmd == "stop" and self.state["gcode_state"] in ("PREPARE", "RUNNING", "PAUSE"):
            self._end("FAILED", CANCELLED_ERROR)
        elif cmd == "stop" and self.pending is not None:
            self.pending = None

    def _project_file(self, req: dict[str, Any], now: float) -> None:
        if self.state["gcode_state"] in ("PREPARE", "RUNNING", "PAUSE") or self.pending:
            return  # busy: a printer ignores a second start
        url = str(req.get("url", ""))
        name = url.split("/")[-1]
        try:
            with zipfile.ZipFile(self.sdcard / name) as z:
                text = z.read(str(req.get("param", "Metadata/plate_1.gcode"))).decode()
        except (OSError, KeyError, zipfile.BadZipFile):
            self.set(print_error=FAILED_ERROR, gcode_state="FAILED", gcode_file=name)
            return
        lines = [ln.split(";")[0].strip() for ln in text.splitlines()]
        task = str(req.get("subtask_name", name))
        self.pending = (now + self.start_lag, name, [ln for ln in lines if ln], task)

    def _end(self, state: str, error: int = 0) -> None:
        self.lines, self.pos, self.user_wait, self.dwell = [], 0.0, False, 0.0
        self.set(gcode_state=state, print_error=error, nozzle_target_temper=0.0,
                 bed_target_temper=0.0)

    def screen(self, word: str) -> None:
        if word == "fail" and self.state["gcode_state"] in ("PREPARE", "RUNNING", "PAUSE"):
            self._end("FAILED", FAILED_ERROR)
        elif word == "cancel":
            self.command({"command": "stop"}, 0.0)
        elif word in ("pause", "resume"):
            self.command({"command": word}, 0.0)

    # --- time -------------------------------------------------------------------------------
    def tick(self, now: float, dt: float) -> None:
        if self.pending is not None and now >= self.pending[0]:
            _, name, lines, task = self.pending
            self.pending = None
            self.lines, self.pos = lines, 0.0
            self.set(gcode_state="RUNNING", gcode_file=name, subtask_name=task, mc_percent=0,
                     print_error=0, total_layer_num=max(1, len(lines) // 10), layer_num=0)
        if self.state["gcode_state"] != "RUNNING" or not self.lines:
            if self.state["gcode_state"] == "RUNNING":
                self._end("FINISH")
            return
        self._advance(dt)

    def _advance(self, dt: float) -> None:
        if self.dwell > 0:  # G4: the printer waits, the file does not move
            self.dwell -= dt
            return
        budget = self.rate * dt
        while budget > 0 and int(self.pos) < len(self.lines):
            line = self.lines[int(self.pos)]
            self._execute(line)
            self.pos += 1
            budget -= 1
            if self.user_wait:
                self.set(gcode_state="PAUSE")
                return
            if self.dwell > 0:
                break
        total = len(self.lines)
        done = int(self.pos)
        left = (total - done) / self.rate / 60 if self.rate else 0
        self.set(mc_percent=min(100, done * 100 // total), mc_remaining_time=int(left),
                 layer_num=done // 10)
        if done >= total:
            self._end("FINISH")
            self.set(mc_percent=100)

    def _execute(self, line: str) -> None:
        word = line.split()[0].upper()
        if word == "M400" and "U1" in line.upper():
            self.user_wait = True
        if word == "G4":
            ms, sec = _param(line, "P"), _param(line, "S")
            self.dwell = (ms or 0) / 1000 + (sec or 0)
        for code, key in (("M104", "nozzle"), ("M109", "nozzle"), ("M140", "bed"), ("M190", "bed")):
            if word == code:
                temp = _param(line, "S")
                if temp is not None:
                    self.set(**{f"{key}_target_temper": temp, f"{key}_temper": temp})


def _param(line: str, letter: str) -> float | None:
    for part in line.split()[1:]:
        if part.upper().startswith(letter):
            try:
                return float(part[1:])
            except ValueError:
                return None
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serial", required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--ftp-port", type=int, required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--sdcard", required=True, type=Path)
    ap.add_argument("--access-code", default="12345678")
    ap.add_argument("--start-lag", type=float, default=2.0)
    ap.add_argument("--lines-per-second", type=float, default=100.0)
    ap.add_argument("--report-interval", type=float, default=0.5)
    args = ap.parse_args()

    printer = Printer(args.sdcard, args.start_lag, args.lines_per_second)
    start_ftps(args.ftp_port, args.sdcard, args.access_code, args.cert, args.key)
    report = f"device/{args.serial}/report"
    seq = [0]
    loud = threading.Event()
    loud.set()

    def publish(client: mqtt.Client, payload: dict[str, Any]) -> None:
        seq[0] += 1
        payload["sequence_id"] = str(seq[0])
        client.publish(report, json.dumps({"print": payload}))

    def on_connect(client: mqtt.Client, *_: Any) -> None:
        # On a real printer the broker is built in, so the firmware is always there when the
        # broker is; here the broker can come back first, so say everything once on (re)connect.
        client.subscribe(f"device/{args.serial}/request")
        with printer.lock:
            if loud.is_set():
                publish(client, dict(printer.state))

    def on_message(client: mqtt.Client, _: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            req = json.loads(msg.payload)
        except ValueError:
            return
        with printer.lock:
            if "pushing" in req and req["pushing"].get("command") == "pushall":
                if loud.is_set():
                    publish(client, dict(printer.state))
            elif isinstance(req.get("print"), dict):
                printer.command(req["print"], time.monotonic())

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"printer-{args.serial}")
    client.username_pw_set("bblp", args.access_code)
    client.tls_set(ca_certs=args.cafile)
    client.on_connect, client.on_message = on_connect, on_message
    client.reconnect_delay_set(0.1, 1.0)
    client.connect_async("127.0.0.1", args.mqtt_port, keepalive=5)
    client.loop_start()

    def read_stdin() -> None:
        for line in sys.stdin:
            word = line.strip()
            if word == "quiet":
                loud.clear()
            elif word == "loud":
                loud.set()
            with printer.lock:
                printer.screen(word)

    threading.Thread(target=read_stdin, daemon=True).start()
    print("ready", flush=True)
    last = last_report = time.monotonic()
    while True:
        time.sleep(0.05)
        now = time.monotonic()
        with printer.lock:
            printer.tick(now, now - last)
            if now - last_report >= args.report_interval and printer.changed and loud.is_set():
                publish(client, dict(printer.changed, command="push_status", msg=1))
                printer.changed = {}
                last_report = now
        last = now


if __name__ == "__main__":
    main()
