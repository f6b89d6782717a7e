# Device side of test_boards: a real board's power-on sequence (boards/common/esp32board.py)
# on the unix port, with the fake `machine` and the fake esp32.Partition over the simulated
# flash. Blank data partition formatted, alert-only until an app is installed; firmware and app
# bundles through one installer; a firmware trial confirmed by the app's self-test, or rolled
# back when it fails; frozen anchors override the factory's; a provisioned production board
# keeps its serial console closed; unreadable data is never erased.
# Usage: micropython board_main.py WORK_IMAGE BOARD_JSON CASES.json
import binascii
import hashlib
import json
import sys

import vfs

import esp32board
import fakepart
import files
import flash
import machine
from bundle import Reject
from fakepart import Partition
from hal import Hal

sys.path.append(__file__.rsplit("/", 3)[0] + "/firmware")  # the app's download checkpoint
import pullstate  # noqa: E402

work, cfg_path, cases = sys.argv[1], sys.argv[2], json.loads(open(sys.argv[3]).read())
with open(cfg_path) as f:
    CFG = json.load(f)
B = cases["bundles"]
lines = []


def power_on():
    fl, label = fakepart.power_on(work)
    assert label, fakepart.boot_log()
    machine.clear()
    machine.attach(0x44, machine.Sht3xModel(20.0))
    del lines[:]
    return esp32board.start(Hal(CFG, log=lines.append), Partition, lines.append)


def push(boot, path, chunk=1000):
    """What the application's updater does with an upload: feed, then finish."""
    inst = boot.installer()
    try:
        with open(path, "rb") as f:
            while True:
                data = f.read(chunk)
                if not data:
                    break
                inst.feed(data)
        inst.finish()
        return inst.target
    finally:
        inst.abort()


def refused(boot, path, verdict):
    try:
        push(boot, path)
    except Reject as e:
        assert e.verdict == verdict, (path, str(e))
        return str(e)
    raise AssertionError(path + " was accepted")


def run_app(boot):
    # The slot's app.py stays imported between boots of this one process: import it afresh.
    sys.modules.pop("app", None)
    return boot.run_app()


def exists(path):
    try:
        open(path).close()
        return True
    except OSError:
        return False


# --- First power-on: the blank data partition is formatted; no app yet: alert-only. ---
boot = power_on()
assert "board: formatting the blank data partition" in lines, lines
assert boot.slot is None and any("EMPTY_SLOT" in r for r in boot.reasons), boot.reasons
assert [type(fs).__name__ for fs, p in vfs.mount() if p == "/"] == ["VfsPosix"]  # left alone
assert boot.firmware.label == "ota_0"

# --- The factory installs 1.0.0 into slot A; it boots and runs. ---
# (a service jig over the REPL, with /factory and /data already mounted by the power-on)
assert esp32board.install(B["app1"], True, Hal(CFG, log=lines.append), Partition) == "1.0.0"
boot = power_on()
assert (boot.slot, boot.version, boot.trial) == ("a", "1.0.0", False), boot.reasons
assert run_app(boot) == "ran 1.0.0"

# --- A firmware bundle through the same installer as apps: into ota_1; an app bundle waits. ---
assert push(boot, B["fw2"]) == "ota_1"
assert fakepart.ota_state() == ("ota_1", "NEW")
assert "firmware image is still on trial" in refused(boot, B["app2"], "BUSY")

# --- Restart: the new image is on trial; the app's self-test confirms it. ---
boot = power_on()
assert "firmware: trial of 2.0.0 in ota_1" in lines, lines
assert boot.trial and boot.firmware.trial and boot.slot == "a"
assert run_app(boot) == "ran 1.0.0"
assert fakepart.ota_state() == ("ota_1", "VALID") and not boot.trial
boot = power_on()
assert not boot.trial and boot.firmware.label == "ota_1"

# --- An app update pulled from the cloud goes to slot B. Power is cut two thirds into the
# download: the next power-on goes on from what the flash holds (re-hashed, not fetched
# again), and the release is confirmed the same way. ---


class Session:
    """What updater.Session gives the puller: the boot stage's installer."""

    def __init__(self, boot):
        self.boot = boot

    def installer(self, resume=None, at=0):
        return self.boot.installer(resume=resume, at=at)


with open(B["app2"], "rb") as f:
    blob = f.read()
sha = binascii.hexlify(hashlib.sha256(blob).digest()).decode()
files.makedirs("/data/app")  # as the app's first start does
dl = pullstate.Download(Session(boot), "/data", sha)
cut = len(blob) * 2 // 3
assert cut > 3 * pullstate.SYNC_BYTES, len(blob)
for i in range(0, cut, 1000):
    dl.feed(blob[i:min(i + 1000, cut)])
boot = power_on()  # the cut: nothing was closed or finished
dl = pullstate.Download(Session(boot), "/data", sha)
assert cut - pullstate.SYNC_BYTES - 4096 <= dl.resumed_from <= cut, (dl.resumed_from, cut)
assert dl.inst.present > 0 and dl.got == dl.resumed_from
for i in range(dl.got, len(blob), 1000):
    dl.feed(blob[i:i + 1000])
assert dl.finish().manifest["version"] == "1.1.0" and dl.inst.target == "b"
dl.close(False)
assert "app slot b is still on trial" in refused(boot, B["fw3"], "BUSY")
boot = power_on()
assert (boot.slot, boot.trial, boot.firmware.trial) == ("b", True, False)
run_app(boot)
boot = power_on()
assert (boot.slot, boot.version, boot.trial) == ("b", "1.1.0", False)

# --- Firmware 3.0.0 whose self-test fails: rollback, reset, the bootloader goes back. ---
assert push(boot, B["fw3"]) == "ota_0"
with open("/data/selftest-fails", "w") as f:
    f.write("1")
boot = power_on()
assert boot.firmware.trial
try:
    run_app(boot)
    raise AssertionError("a failed self-test must reset the board")
except machine.ResetCalled:
    pass
boot = power_on()
assert boot.firmware.label == "ota_1" and "otadata[0] PENDING_VERIFY -> ABORTED" in \
    fakepart.boot_log()
assert any("self-test failed (test)" in line for line in lines), lines
assert (boot.slot, boot.version) == ("b", "1.1.0")

# --- Frozen trust anchors (production) take precedence over the factory's anchors.json. ---


class Frozen:
    ANCHORS = {"roots": [{"alg": "ed25519", "key": cases["other_root"]}], "key_floor": 1}


sys.modules["trust_anchors"] = Frozen
boot = power_on()
assert boot.slot is None and all("UNKNOWN_ROOT" in r for r in boot.reasons), boot.reasons
del sys.modules["trust_anchors"]
boot = power_on()
assert boot.slot == "b"

# --- A new image under which no app slot verifies is not good: it is rolled back at once. ---
assert push(boot, B["fw3"]) == "ota_0"

# (both app slots' signed headers put aside: the first sector of each ROMFS region)
kept = {}
for label in ("romfs", "romfs_b"):
    kept[label] = bytearray(4096)
    Partition(label).readblocks(0, kept[label])
    Partition(label).ioctl(6, 0)
try:
    power_on()
    raise AssertionError("the board must restart into the previous image")
except machine.ResetCalled:
    pass
boot = power_on()
assert boot.firmware.label == "ota_1" and boot.slot is None, (boot.reasons, lines)
assert any("no app slot verifies under it" in line for line in lines), lines
for label in ("romfs", "romfs_b"):
    Partition(label).writeblocks(0, kept[label])
boot = power_on()
assert boot.slot == "b" and not boot.trial

# --- Both copies of the state record garbled: the floors come back from what still verifies
# (the app slot that runs, the running MicroPython image), never the factory defaults. ---
before = boot.state()
for p in ("/data/slots/state.json", "/data/slots.1/state.json"):
    with open(p, "w") as f:
        f.write("garbled")
boot = power_on()
after = boot.state()
assert boot.slot == "b" and not after.get("lost"), (boot.reasons, after)
for k in ("active", "sec_floor", "key_floor"):
    assert after[k] == before[k], (k, before, after)
assert after["fw"]["sec_floor"] == before["fw"]["sec_floor"] > 0, (before, after)

# --- The serial console: a provisioned production board never offers the REPL. ---


class Production:
    ANCHORS = {"roots": [{"alg": "ed25519", "key": cases["root"]}], "key_floor": 1}


def main_once(production):
    """The frozen main.py's esp32board.main(): how it ended, and its kbd_intr() calls."""
    power_on()
    calls = []
    if production:
        sys.modules["trust_anchors"] = Production
    sys.modules.pop("app", None)
    try:
        esp32board.main(Hal(CFG, log=lines.append), Partition, calls.append)
        ended = "returned"
    except machine.ResetCalled:
        ended = "reset"
    finally:
        sys.modules.pop("trust_anchors", None)
    return ended, calls


# Production: Ctrl-C off before the boot stage runs and never back on; when the app ends,
# the board restarts instead of falling through to the REPL prompt.
assert main_once(True) == ("reset", [-1])
# A development build gives Ctrl-C back (main.py takes it away before its first import).
assert main_once(False) == ("returned", [3])
# The frozen main.py: whatever ends esp32board.main() (here a Ctrl-C that beat it), a
# production build restarts; a development build lets it end (and the REPL come up).


class Interrupted:
    @staticmethod
    def main(kbd_intr):
        raise KeyboardInterrupt


def run_frozen_main(production):
    with open(esp32board.__file__.rsplit("/", 1)[0] + "/main.py") as f:
        src = f.read()
    saved, real = sys.path[:], sys.modules["esp32board"]
    sys.modules["esp32board"] = Interrupted
    if production:
        sys.modules["trust_anchors"] = Production
    try:
        exec(src, {})
        return "ended"
    except machine.ResetCalled:
        return "reset"
    except KeyboardInterrupt:
        return "interrupted"
    finally:
        sys.path[:] = saved
        sys.modules["esp32board"] = real
        sys.modules.pop("trust_anchors", None)


assert run_frozen_main(True) == "reset"
assert run_frozen_main(False) == "interrupted"
# Without a factory record the production console reopens for the factory line.
assert esp32board.provisioned(CFG)
assert not esp32board.provisioned(dict(CFG, factory_mount="/nowhere"))

# --- A data partition littlefs cannot read is reported and left as it is. ---
fakepart.power_off()
data = flash.Flash(work).table()["vfs"]
with open(work, "r+b") as f:
    f.seek(data[2])
    f.write(b"\x00garbage" * 1024)
boot = power_on()
assert boot.slot is None and any("data filesystem cannot be mounted" in r
                                 for r in boot.reasons), boot.reasons
with open(work, "rb") as f:
    f.seek(data[2])
    assert f.read(8) == b"\x00garbage"  # never erased
fakepart.power_off()
print("OK")
