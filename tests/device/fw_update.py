# Device side of test_fwupdate: firmware updates through the fake esp32.Partition on the
# simulated flash (an ESP32 with the unix board's table). Install, restart into the trial,
# confirm; roll back when the image restarts unconfirmed or its self-test fails; refuse while
# unconfirmed; the tamper matrix; a corrupted running image makes the bootloader fall back.
# Usage: micropython fw_update.py WORK_IMAGE CASES.json
import json
import sys

import bootstage
import fakepart
import flash
import fwupdate
import slotstate
from bundle import Reject
from fakepart import Partition
from slots import exists

CFG = {"board": "esp32", "product": "iot-thermostat", "root": "/data", "chip": "esp32"}
work, cases = sys.argv[1], json.loads(open(sys.argv[2]).read())
buf = bytearray(4096)
logs = []


def power_on():
    """Reset: the bootloader model picks the app, then the boot stage's firmware check."""
    fl, label = fakepart.power_on(work)
    assert label, fakepart.boot_log()
    flash.mount_factory(fl)
    flash.mount_data(fl)
    anchors, floor = bootstage.load_anchors("/factory/anchors.json")
    fw = fwupdate.Firmware(Partition, CFG, anchors, floor, logs.append)
    return fw, fw.boot_check(buf)


def install(fw, path, now=0):
    with open(path, "rb") as f:
        return fw.install_stream(f, buf, now=now)


def refused(fw, path, verdict, now=0):
    try:
        install(fw, path, now)
    except Reject as e:
        assert e.verdict == verdict, "%s: got %s, expected %s" % (path, e, verdict)
        return str(e)
    raise AssertionError("%s was accepted, expected %s" % (path, verdict))


def running_version():
    # esp_app_desc_t.version, at offset 48 of the image
    raw = bytearray(32)
    Partition(Partition.RUNNING).readblocks(0, raw, 48)
    return bytes(raw).split(b"\0")[0].decode()


def boot_label():
    return Partition(Partition.BOOT).info()[4]




B = cases["bundles"]

# --- First power-on of a factory-flashed board: blank otadata, ota_0 runs and is recorded. ---
fw, r = power_on()
assert r == "none" and fw.label == "ota_0", (r, fw.label)
assert "otadata[0] initialised to seq 1" in fakepart.boot_log()
assert fakepart.ota_state() == ("ota_0", "VALID")
assert running_version() == "1.0.0"
try:
    fw.verify_running(buf)
    raise AssertionError("a factory image has no bundle record")
except Reject as e:
    assert e.verdict == "NO_RECORD"

# --- Install 2.0.0: into ota_1, read back, recorded, made the boot partition (NEW). ---
v = install(fw, B["v2"])
assert v.manifest["version"] == "2.0.0"
assert boot_label() == "ota_1" and fakepart.ota_state() == ("ota_1", "NEW")
assert fw.state()["pending"] == "ota_1" and exists("/data/fw/ota_1.bnd")
assert refused(fw, B["v3"], "BUSY").startswith("BUSY: firmware in ota_1")

# --- Restart: the bootloader marks it PENDING_VERIFY and runs it; the boot stage verifies
# it and starts the trial; no new update while it is unconfirmed. ---
fw, r = power_on()
assert "otadata[1] NEW -> PENDING_VERIFY" in fakepart.boot_log()
assert (r, fw.label, fw.version, running_version()) == ("trial", "ota_1", "2.0.0", "2.0.0")
assert fw.unconfirmed()
st = fw.state()
st["pending"] = None
fw._save(st)  # even with the record lost, the bootloader state alone refuses a new update
assert "has not confirmed" in refused(fw, B["v3"], "BUSY")
st["pending"] = "ota_1"
fw._save(st)

# --- A build without app rollback cannot confirm: reported, the trial stays open. ---
real_mark = Partition.mark_app_valid_cancel_rollback


def no_rollback_support(cls):
    raise OSError(-261)


Partition.mark_app_valid_cancel_rollback = classmethod(no_rollback_support)
assert not fw.confirm() and fw.trial and "cannot confirm ota_1" in logs[-1], logs[-1]
Partition.mark_app_valid_cancel_rollback = real_mark

# --- The self-test passed: confirm. VALID, floor raised, next boot is plain. ---
assert fw.confirm() and not fw.trial and not fw.confirm()
assert fakepart.ota_state() == ("ota_1", "VALID")
assert fw.state()["sec_floor"] == 2 and fw.state()["pending"] is None
fw, r = power_on()
assert (r, fw.label) == ("none", "ota_1") and not fakepart.boot_log()[:-1]
assert fw.verify_running(buf).manifest["version"] == "2.0.0"

# --- 3.0.0 restarts without confirming: the bootloader rolls back to 2.0.0. ---
install(fw, B["v3"])
assert boot_label() == "ota_0"
fw, r = power_on()
assert (r, fw.label, fw.version) == ("trial", "ota_0", "3.0.0")
fw, r = power_on()  # a crash or watchdog reset before the self-test passed
assert "otadata[0] PENDING_VERIFY -> ABORTED" in fakepart.boot_log()
assert (r, fw.label, running_version()) == ("rolled_back", "ota_1", "2.0.0")
assert not exists("/data/fw/ota_0.bnd")  # the failed image is never verified again
assert "ota_0 did not confirm itself" in fw.state()["last"]
fw, r = power_on()
assert (r, fw.label) == ("none", "ota_1")

# --- 3.0.0 again, its self-test fails: rollback() then reset; the reason is kept. ---
install(fw, B["v3"])
fw, r = power_on()
assert r == "trial"
fw.rollback("sensor driver missing")
fw, r = power_on()
assert (r, fw.label) == ("rolled_back", "ota_1")
assert "sensor driver missing" in fw.state()["last"], fw.state()

# --- While an app slot is on trial, firmware waits (one trial at a time). ---
sst = slotstate.load("/data/slots/state.json")
sst["pending"], sst["trials"] = "b", 3
slotstate.save("/data/slots/state.json", sst)
assert "app slot b" in refused(fw, B["v3"], "BUSY")
sst["pending"], sst["trials"] = None, 0
slotstate.save("/data/slots/state.json", sst)

# --- Tamper matrix: each refused with its verdict; nothing recorded, boot partition kept. ---
verdicts = {}
for name, path, verdict in cases["tamper"]:
    before = fakepart.ota_state()
    verdicts[name] = refused(fw, path, verdict, now=cases["now"])
    assert fakepart.ota_state() == before, name
    assert boot_label() == "ota_1" and fw.state()["pending"] is None, name
    assert not exists("/data/fw/ota_0.bnd"), name

# --- A bundle from a rotated update key (serial 2): confirming it revokes serial 1. ---
install(fw, B["v4_key2"])
fw, r = power_on()
assert (r, fw.version) == ("trial", "4.0.0")
fw.confirm()
assert slotstate.load("/data/slots/state.json")["key_floor"] == 2
refused(fw, B["v5_key1"], "KEY_REVOKED")
refused(fw, B["downgrade_key2"], "DOWNGRADE")  # security version 3 < floor 4

# --- The running image is corrupted on flash: the bootloader falls back to the other one. ---
fw, r = power_on()
label = fw.label
part = Partition(label)
off = part.info()[2]
fakepart.power_off()
with open(work, "r+b") as f:
    f.seek(off + 1000)
    b = f.read(1)
    f.seek(off + 1000)
    f.write(bytes([b[0] ^ 1]))
fw, r = power_on()
assert fw.label != label, fakepart.boot_log()
assert fakepart.boot_log()[0] == label + " is not bootable: checksum mismatch", fakepart.boot_log()

fakepart.power_off()
print(json.dumps({"verdicts": verdicts, "log": logs[-3:]}))
# The firmware writer (and littlefs, uncut) never programmed over bits that were not erased.
assert flash.Flash.all_overprograms == 0, flash.Flash.all_overprograms
print("OK")
