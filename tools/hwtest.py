#!/usr/bin/env python3
"""Hardware test: what a person with a real board runs (`make hwtest PORT=... BOARD=...`).

Steps: flash (erase, bootloader, partition table, MicroPython with the frozen boot stage),
provision (identity, password, key, certificate over the serial REPL), install (Wi-Fi settings
and app 1.0.0 into slot A, with the device's own installer), boot (slot A verified, address),
push (1.1.0 over the local TLS API: confirmed), tamper (a byte of slot B's code changed: the
boot stage refuses it and falls back to A), rollback (a release whose self-test fails: the
device rolls back), and with --firmware-update a firmware update (trial, then confirmed).
Each step prints PASS or FAIL with the reason; the first FAIL stops the run. --dry-run prints
the plan and runs nothing. Needs: `iotctl keys init` and `iotctl ca init` in --keys, the
MicroPython build of docs/real-board.md, and a 2.4 GHz Wi-Fi network for the board.
"""

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host_tools import bundle, esp, keys, provision, push  # noqa: E402
from host_tools.errors import IotctlError  # noqa: E402
from host_tools.esp import micropython_image  # noqa: E402

HTTPS_PORT = 443
BROKEN_SELFTEST = b"async def run(dev, *a):\n    return 'broken on purpose by tools/hwtest.py'\n"


class StepFailed(Exception):
    pass


class SerialLog:
    """The board's console: hard reset through the auto-reset circuit (RTS to EN, DTR to
    IO0, as esptool does) and wait for log lines."""

    def __init__(self, port, reset=True):
        import serial

        self.ser = serial.Serial()
        self.ser.port, self.ser.baudrate, self.ser.timeout = port, 115200, 0.2
        self.ser.dtr = self.ser.rts = False  # opening the port must not reset the board
        self.ser.open()
        self.lines = []
        if reset:
            self.ser.dtr, self.ser.rts = False, True
            time.sleep(0.1)
            self.ser.rts = False

    def expect(self, patterns, timeout):
        """Wait until every regex in `patterns` matched a line; returns their matches."""
        found, pending = {}, dict(patterns)
        deadline = time.monotonic() + timeout
        buf = b""
        while pending and time.monotonic() < deadline:
            buf += self.ser.read(4096)
            *done, buf = buf.split(b"\n")
            for raw in done:
                line = raw.decode(errors="replace").strip()
                self.lines.append(line)
                for name, rx in list(pending.items()):
                    m = re.search(rx, line)
                    if m:
                        found[name] = m
                        del pending[name]
        if pending:
            raise StepFailed(f"no log line like {'; '.join(pending.values())} within {timeout} s"
                             f"; last lines: {' | '.join(self.lines[-6:])}")
        return found

    def close(self):
        self.ser.close()


class Repl:
    """mpremote's raw REPL after a soft reset (MicroPython's main.py does not run), with the
    board's partitions mounted by the jig (/factory, /data)."""

    def __init__(self, port):
        from mpremote.transport_serial import SerialTransport

        self.t = SerialTransport(port, baudrate=115200)

    def __enter__(self):
        self.t.enter_raw_repl(soft_reset=True)
        self.run("import esp32board\nprint(esp32board.jig())")
        return self

    def run(self, code):
        from mpremote.transport import TransportExecError

        try:
            return self.t.exec(code).decode()
        except TransportExecError as e:
            raise StepFailed(f"device: {e.error_output.strip()[-300:]}") from None

    def write(self, path, data):
        self.t.fs_writefile(path, data)

    def __exit__(self, *exc):
        try:
            self.t.exit_raw_repl()
        finally:
            self.t.close()


class HwTest:
    def __init__(self, args):
        self.a = args
        self.board = esp.load_board(args.board)
        self.work = Path(args.workdir or REPO / "build" / "hwtest" / args.board)
        self.record = None
        self.bundles = None
        self.address = args.device
        self.ca = Path(args.keys) / "ca.crt"

    # --- the plan: (name, what it shows, expected result, function) --------------------

    def steps(self):
        a, w, chip = self.a, self.work, self.board["chip"]
        dev = self.address or "ADDRESS:443"
        name = self.record.device_id if self.record else "DEVICE_ID"
        iot = "iotctl"
        erase = esp.format_argv(esp.tool_argv("esptool", "--chip", chip, "--port", a.port,
                                              "erase-flash"))
        plan = [
            ("flash", [erase, f"{iot} flash --board {a.board} --port {a.port} --firmware "
                              f"{a.firmware} --bootloader {a.bootloader}"],
             "bootloader, partition table, blank otadata, MicroPython in ota_0", self.flash),
            ("provision", [f"{iot} provision --keys {a.keys} --board {a.board} --port {a.port} "
                           f"--labels {w / 'labels'} --json"],
             "a factory record in fctry, the password on the label", self.provision),
            ("install", [f"{iot} build --keys {a.keys} --board {a.board} --version 1.0.0 "
                         f"--security-version 1 -o {w / 'app-1.0.0.bnd'}  (and 1.1.0, 1.2.0)",
                         "mpremote raw REPL: esp32board.jig(); write /data/wifi.json and "
                         "/data/factory.bnd; esp32board.install('/data/factory.bnd', True)"],
             "slot A holds 1.0.0, installed by the device's own installer", self.install),
            ("boot", ["hard reset, read the console"],
             "expect: boot: slot a verified (1.0.0); wifi: connected ... address", self.boot),
            ("push", [f"{iot} push {w / 'app-1.1.0.bnd'} --device {dev} --ca {self.ca} --name "
                      f"{name}"], "expect: confirmed 1.1.0 in slot b", self.push),
            ("console", ["mpremote: try to enter the raw REPL (Ctrl-C, Ctrl-A), as an "
                         "attacker with a serial adapter would"],
             "expect: refused (production build: the provisioned board's console is closed)",
             self.console) if a.production else
            ("tamper", ["mpremote raw REPL: clear one bit near the end of slot b's ROMFS "
                        "image in the romfs partition; hard reset, read the console"],
             "expect: slot b refused (BAD_FILE_HASH), fell back to slot a (1.0.0)", self.tamper),
            ("rollback", [f"{iot} push {w / 'app-1.2.0-broken.bnd'} --device {dev} --ca "
                          f"{self.ca} --name {name}"],
             "expect: rolled_back to 1.0.0 (the release's self-test fails)", self.rollback),
        ]
        if a.firmware_update:
            plan.append(("firmware", [f"{iot} sign --kind firmware {a.firmware_update} --keys "
                                      f"{a.keys} --board {a.board} --version "
                                      f"{a.firmware_version} --security-version 1 -o "
                                      f"{w / 'firmware.bnd'}",
                                      f"{iot} push {w / 'firmware.bnd'} --device {dev} --no-wait"],
                         "expect: firmware trial in ota_1, then confirmed", self.firmware))
        return plan

    def print_plan(self):
        for i, (name, commands, expect, _fn) in enumerate(self.steps(), 1):
            print(f"{i}. {name}: {expect}")
            for c in commands:
                print(f"     $ {c}")
        print("dry run: nothing was run")

    def run(self):
        failed = 0
        for i, (name, _commands, _expect, fn) in enumerate(self.steps(), 1):
            start = time.monotonic()
            try:
                detail = fn()
            except (StepFailed, IotctlError, OSError) as e:
                print(f"FAIL {i}. {name}: {e}", flush=True)
                failed += 1
                if not self.a.keep_going:
                    break
                continue
            print(f"PASS {i}. {name}: {detail} ({time.monotonic() - start:.1f} s)", flush=True)
        print("hwtest: " + ("all steps passed" if not failed else f"{failed} step(s) failed"))
        return 1 if failed else 0

    # --- steps ----------------------------------------------------------------------------

    def flash(self):
        chip = self.board["chip"]
        esp.run_tool(esp.tool_argv("esptool", "--chip", chip, "--port", self.a.port,
                                   "erase-flash"))
        job = esp.flash(self.a.board, self.a.firmware, bootloader=self.a.bootloader,
                        port=self.a.port, stream=lambda text: None)
        return f"{len(job.images)} images written to a freshly erased {chip}"

    def provision(self):
        self.record = provision.provision(self.a.keys, board=self.a.board, port=self.a.port,
                                          labels=self.work / "labels")[0]
        (self.work / "device.json").write_text(json.dumps(self.record.public()))
        return f"device {self.record.device_id}, label in {self.work / 'labels'}"

    def _bundles(self):
        if self.bundles is not None:
            return self.bundles
        base, files = bundle.collect_app()
        out = {}
        for version, sec in (("1.0.0", 1), ("1.1.0", 2)):
            out[version] = self.work / f"app-{version}.bnd"
            bundle.build(self.a.keys, [self.a.board], version, sec, out=out[version])
        broken = dict(files, **{"selftest.py": BROKEN_SELFTEST})
        out["broken"] = self.work / "app-1.2.0-broken.bnd"
        bundle.build(self.a.keys, [self.a.board], "1.2.0", 3, out=out["broken"], files=broken,
                     product=base["product"])
        self.bundles = out
        return out

    def install(self):
        self._bundles()
        wifi = json.dumps({"ssid": self.a.wifi_ssid, "password": self.a.wifi_password})
        with Repl(self.a.port) as r:
            r.write("/data/wifi.json", wifi.encode())
            r.write("/data/factory.bnd", self.bundles["1.0.0"].read_bytes())
            out = r.run("print(esp32board.install('/data/factory.bnd', True))").strip()
            r.run("import os\nos.remove('/data/factory.bnd')")
        if not out.endswith("1.0.0"):
            raise StepFailed(f"the device's installer answered {out!r}")
        return "slot A holds 1.0.0 (installed and verified on the device)"

    def _boot_log(self, patterns, reset=True, action=None):
        log = SerialLog(self.a.port, reset=reset)
        try:
            if action:
                action()
            found = log.expect(patterns, self.a.timeout)
        finally:
            log.close()
        if "wifi" in found:
            self.address = f"{found['wifi'].group(1)}:{HTTPS_PORT}"
        return found

    def boot(self):
        self._boot_log({"slot": r"boot: slot a verified \(1\.0\.0\)",
                        "wifi": r"wifi: connected to .*, address ([0-9.]+)"})
        return f"slot a verified (1.0.0); local API at {self.address}"

    def _device(self):
        if self.record is None:
            raise StepFailed("no device record: the provision step did not pass")
        if not self.address:
            raise StepFailed("the board's address is unknown (no Wi-Fi line; give --device)")
        return push.Device(self.address, self.record.password, ca=str(self.ca),
                           name=self.record.device_id)

    def push(self):
        result = push.push(self._device(), self._bundles()["1.1.0"], timeout=self.a.timeout)
        if result["result"] != "confirmed" or result["version"] != "1.1.0":
            raise StepFailed(f"expected confirmed 1.1.0, got {result}")
        return f"confirmed {result['from']} -> 1.1.0 in slot {result['slot']}"

    def tamper(self):
        with Repl(self.a.port) as r:
            # Slot b runs, so its image is in the primary region (romfs): one bit of a byte
            # near its end goes from 1 to 0, as a flash write can make it.
            victim = r.run("import esp32, romslots\np = esp32.Partition('romfs')\n"
                           "end = romslots.used(p, bytearray(64))\nb = bytearray(1)\n"
                           "at = end - 100\n"
                           "while True:\n    p.readblocks(at // 4096, b, at % 4096)\n"
                           "    if b[0]:\n        break\n    at -= 1\n"
                           "b[0] &= b[0] - 1\np.writeblocks(at // 4096, b, at % 4096)\n"
                           "print(hex(at))").strip()
        self._boot_log({"refused": r"boot: slot b refused: BAD_FILE_HASH",
                        "fallback": r"boot: slot a verified \(1\.0\.0\)",
                        "wifi": r"wifi: connected to .*, address ([0-9.]+)"})
        return f"slot b (image byte {victim} changed) refused, fell back to slot a (1.0.0)"

    def console(self):
        """A production build: the serial REPL of the provisioned, running board stays shut."""
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        t = SerialTransport(self.a.port, baudrate=115200)
        try:
            t.enter_raw_repl(soft_reset=False)
        except TransportError:
            return "mpremote could not enter the raw REPL: the console is closed"
        finally:
            t.close()
        raise StepFailed("the raw REPL answered: the serial console is open on a provisioned "
                         "production board")

    def rollback(self):
        result = push.push(self._device(), self._bundles()["broken"], timeout=self.a.timeout)
        if result["result"] != "rolled_back" or result["version"] != "1.0.0":
            raise StepFailed(f"expected rolled_back to 1.0.0, got {result}")
        return f"rolled back to 1.0.0: {result.get('reason')}"

    def firmware(self):
        out = self.work / "firmware.bnd"
        micropython_image.build(self.a.firmware_update, self.a.keys, self.a.board,
                       self.a.firmware_version, 1, out=out)
        v = re.escape(self.a.firmware_version)
        self._boot_log({"trial": rf"firmware: trial of {v} in ota_1",
                        "confirmed": rf"firmware: confirmed firmware {v} in ota_1"},
                       reset=False, action=lambda: push.push(self._device(), out, wait=False))
        return f"firmware {self.a.firmware_version} ran its trial in ota_1 and was confirmed"


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Recipe and wiring: docs/real-board.md")
    ap.add_argument("--port", required=True, help="serial port of the board, e.g. /dev/ttyUSB0")
    ap.add_argument("--board", required=True, choices=esp.CHIPS)
    ap.add_argument("--firmware", help="micropython.bin of the build "
                    "[default: build/firmware/BOARD/micropython.bin or $IOT_FIRMWARE]")
    ap.add_argument("--bootloader", help="bootloader.bin of the same build "
                    "[default: beside --firmware]")
    ap.add_argument("--keys", default="keys", help="signing keys and CA [default: keys]")
    ap.add_argument("--workdir", help="bundles, labels, device record "
                    "[default: build/hwtest/BOARD]")
    ap.add_argument("--wifi-ssid", default=os.environ.get("IOT_WIFI_SSID"),
                    help="[default: $IOT_WIFI_SSID]")
    ap.add_argument("--wifi-password", default=os.environ.get("IOT_WIFI_PASSWORD"),
                    help="[default: $IOT_WIFI_PASSWORD]")
    ap.add_argument("--device", help="HOST:PORT of the board's API, if its log does not say")
    ap.add_argument("--firmware-update", help="a second MicroPython image: also test a "
                    "firmware update to it")
    ap.add_argument("--firmware-version", default="1.0.1")
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds per wait [90]")
    ap.add_argument("--production", action="store_true", help="the firmware is a production "
                    "build (frozen trust anchors): check that the console closes instead of "
                    "tampering over the REPL")
    ap.add_argument("--keep-going", action="store_true", help="run the steps after a FAIL")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    a = ap.parse_args(argv)
    a.firmware = Path(a.firmware or os.environ.get("IOT_FIRMWARE")
                      or REPO / "build" / "firmware" / a.board / "micropython.bin")
    a.bootloader = Path(a.bootloader or a.firmware.with_name("bootloader.bin"))
    return ap, a


def preflight(a):
    """Everything a run needs before it touches the board; returns the problems."""
    problems = []
    if not a.firmware.is_file():
        problems.append(f"firmware image {a.firmware} not found (build it: docs/real-board.md)")
    else:
        try:
            micropython_image.check_image(a.firmware.read_bytes(), a.board)
        except IotctlError as e:
            problems.append(f"{a.firmware}: {e}")
    if a.dry_run:
        return problems
    if not a.bootloader.is_file():
        problems.append(f"bootloader {a.bootloader} not found (same build folder)")
    try:
        keys.load_info(a.keys)
    except IotctlError as e:
        problems.append(str(e))
    if not (Path(a.keys) / "ca.crt").is_file():
        problems.append(f"no manufacturer CA in {a.keys} (iotctl ca init --dir {a.keys})")
    if not (a.wifi_ssid and a.wifi_password):
        problems.append("the board needs Wi-Fi: --wifi-ssid/--wifi-password or "
                        "$IOT_WIFI_SSID/$IOT_WIFI_PASSWORD")
    if a.firmware_update and not Path(a.firmware_update).is_file():
        problems.append(f"--firmware-update {a.firmware_update} not found")
    return problems


def main(argv=None):
    _ap, a = parse_args(argv)
    problems = preflight(a)
    if problems:
        for p in problems:
            print(f"hwtest: {p}")
        return 2
    test = HwTest(a)
    if a.dry_run:
        test.print_plan()
        return 0
    shutil.rmtree(test.work / "labels", ignore_errors=True)
    test.work.mkdir(parents=True, exist_ok=True)
    return test.run()


if __name__ == "__main__":
    sys.exit(main())
