# Device side of test_flash: power cuts. A torn program/erase and a dead flash, then a
# sweep that cuts the power at every flash operation of one file rewrite, reboots, and
# requires littlefs to mount with the old or the new content (and stay writable). The
# rewrite is followed by a second file write, so that cuts land both before and after
# the rewrite's commit.
# Usage: micropython flash_powercut.py BASE_IMAGE WORK_IMAGE
#   BASE_IMAGE: vfs holds cfg.bin = pattern(6000, 1), keep.txt = KEEP and
#   state.json = {"version": -1}.
import json
import os
import sys
import vfs

import flash

OLD_LEN, NEW_LEN = 6000, 20000
KEEP = b"unrelated file\n"
base, work = sys.argv[1], sys.argv[2]
chunk = bytearray(65536)
# Files left open by a cut stay referenced here: otherwise their GC finaliser would try to
# close them on the dead flash and print the PowerCut it gets.
zombies = []


def pattern(n, seed):
    b = bytearray(n)
    for i in range(n):
        b[i] = (i * 31 + seed) & 0xFF
    return b


OLD, NEW, AFTER = pattern(OLD_LEN, 1), pattern(NEW_LEN, 2), pattern(5000, 3)


def raises(exc, fn):
    try:
        fn()
    except exc:
        return
    raise AssertionError("no " + exc.__name__)


def restore():
    with open(base, "rb") as src, open(work, "wb") as dst:
        while True:
            n = src.readinto(chunk)
            if not n:
                break
            dst.write(chunk, 0, n)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# --- A torn program writes a prefix; a torn erase leaves the sector half erased. ---
restore()
fl = flash.Flash(work)
nvs = fl.partition("nvs")
raises(ValueError, lambda: fl.cut_at(0))
nvs.ioctl(6, 0)
nvs.writeblocks(1, bytearray(4096))  # erase + program: ops 2 and 3
assert fl.ops == 3
fl.cut_at(4)
raises(flash.PowerCut, lambda: nvs.writeblocks(0, b"\x5a" * 64, 0))
assert fl.ops == 4 and fl.dead
raises(flash.PowerCut, lambda: nvs.ioctl(6, 2))
raises(flash.PowerCut, lambda: nvs.readblocks(0, bytearray(4)))
assert fl.ops == 4
fl.close()
fl = flash.Flash(work)  # power back on
nvs = fl.partition("nvs")
b = bytearray(4096)
nvs.readblocks(0, b)
assert b[:32] == b"\x5a" * 32 and b[32:] == b"\xff" * (4096 - 32)
fl.cut_at(1)
raises(flash.PowerCut, lambda: nvs.ioctl(6, 1))
fl.close()
fl = flash.Flash(work)
fl.partition("nvs").readblocks(1, b)
assert b[:2048] == b"\xff" * 2048 and b[2048:] == b"\x00" * 2048
fl.close()


# --- The sweep. ---
def attempt(cut):
    """Rewrite cfg.bin, then write log.txt, with the power cut at the `cut`-th flash
    operation of the two (0: no cut)."""
    restore()
    fl = flash.Flash(work)
    flash.mount_data(fl)
    start = fl.ops
    if cut:
        fl.cut_at(start + cut)
    torn = False
    try:
        for path, data in (("/data/cfg.bin", NEW), ("/data/log.txt", b"cfg.bin rewritten\n")):
            f = open(path, "wb")
            zombies.append(f)
            f.write(data)
            f.close()
            zombies.pop()
    except flash.PowerCut:
        torn = True
    used = fl.ops - start
    if torn:
        assert used == cut
        raises(flash.PowerCut, lambda: fl.erase(0x9000))
    try:
        vfs.umount("/data")
    except flash.PowerCut:
        pass
    fl.close()
    # Reboot: mount (never format) and check the outcome.
    fl = flash.Flash(work)
    flash.mount_data(fl)
    got = read("/data/cfg.bin")
    assert got == OLD or got == NEW, (cut, len(got))
    assert read("/data/keep.txt") == KEEP
    # Still writable under the NOR rules after whatever the cut left behind.
    with open("/data/after.bin", "wb") as f:
        f.write(AFTER)
    with open("/data/cfg.bin", "ab") as f:
        f.write(b"+")
    assert read("/data/after.bin") == AFTER and read("/data/cfg.bin") == got + b"+"
    vfs.umount("/data")
    fl.close()
    return torn, used, ("new" if got == NEW else "old")


torn, total, outcome = attempt(0)
assert not torn and outcome == "new"
outcomes = []
for cut in range(1, total + 1):
    torn, used, outcome = attempt(cut)
    assert torn, cut
    outcomes.append(outcome)
# Old until the rewrite's commit reaches the flash, new from then on.
assert "old" in outcomes and "new" in outcomes, outcomes
first_new = outcomes.index("new")
assert all(o == "new" for o in outcomes[first_new:]), outcomes
summary = {"ops": total, "outcomes": "".join(o[0] for o in outcomes)}


# --- A second sweep over a state record replaced many times (write temp, rename), long
# enough for littlefs to compact its metadata: erases of metadata blocks get cut too. ---
RECORDS = 25


def replace_records(cut):
    restore()
    fl = flash.Flash(work)
    flash.mount_data(fl)
    start = fl.ops
    if cut:
        fl.cut_at(start + cut)
    try:
        for k in range(RECORDS):
            f = open("/data/state.tmp", "w")
            zombies.append(f)
            f.write(json.dumps({"version": k, "pad": "x" * 100}))
            f.close()
            zombies.pop()
            os.rename("/data/state.tmp", "/data/state.json")
    except flash.PowerCut:
        pass
    used = fl.ops - start
    try:
        vfs.umount("/data")
    except flash.PowerCut:
        pass
    fl.close()
    fl = flash.Flash(work)
    flash.mount_data(fl)
    with open("/data/state.json") as f:
        version = json.load(f)["version"]
    with open("/data/state.json", "w") as f:  # writable again
        f.write("{}")
    vfs.umount("/data")
    fl.close()
    return used, version


total, version = replace_records(0)
assert version == RECORDS - 1
versions = [replace_records(cut)[1] for cut in range(1, total + 1)]
assert versions == sorted(versions) and versions[0] == -1 and versions[-1] == RECORDS - 2
summary["record_ops"] = total
print(json.dumps(summary))
print("OK")
