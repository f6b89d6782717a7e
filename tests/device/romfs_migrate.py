# Migration from directory slots to ROMFS slots, on the simulated board: a device whose data
# filesystem holds directory slots (installed by the directory installer, as the boot stage
# before ROMFS slots did) and a state record with raised floors takes a ROMFS bundle as an
# ordinary signed update. The record and its floors carry over; a failed trial falls back to
# the directory slot; a confirmed ROMFS image removes the directory slots (data only stays).
#   micropython romfs_migrate.py FLASH.bin DIR_V1 ROM_V2 ROM_V3 DOWNGRADE
import os
import sys

import bootstage
import flash
import records
import romslots
import slots
import slotstate
from bundle import Reject
from servicejig import sim_config

STATE = "/data/slots/state.json"


class Reset(Exception):
    pass


class NoHal:
    def reset(self):
        raise Reset()


def boot(fl):
    flash.unmount()
    flash.mount_factory(fl)
    flash.mount_data(fl)
    return bootstage.start(NoHal(), sim_config(), lambda m: None)


def main(image, dir_v1, rom_v2, rom_v3, downgrade):
    fl = flash.Flash(image)
    flash.mount_factory(fl)
    flash.mount_data(fl)
    cfg = sim_config()
    anchors, floor = bootstage.load_anchors(cfg["anchors"])
    # The device before ROMFS slots: directory slot a, a record without swap count, floors 5.
    # (The simulator made it with a ROMFS image: its header goes, its record too.)
    romslots.invalidate(cfg["regions"].primary)
    records.remove(STATE)
    policy = {"kind": "app", "product": cfg["product"], "board": cfg["board"], "sec_floor": 0,
              "key_floor": floor, "capacity": cfg["capacity"], "now": 0}
    with open(dir_v1, "rb") as f:
        slots.install_stream(f, bytearray(4096), "/data", STATE, anchors, policy, factory=True)
    st = slotstate.load(STATE)
    old = {k: st[k] for k in ("active", "pending", "trials", "sec_floor", "key_floor", "last",
                              "fw")}
    old["sec_floor"] = 5
    records.save(STATE, old)
    assert "swaps" not in records.load(STATE)[0]

    b = boot(fl)  # the new boot stage runs the directory slot
    assert b.slot, b.reasons
    assert (b.slot, b.version, b.app_dir) == ("a", "1.0.0", "/data/slots/a"), b.reasons
    assert b.state()["sec_floor"] == 5
    try:  # the floors came along: a ROMFS image below them is refused like any other
        with open(downgrade, "rb") as f:
            b.install_stream(f)
        raise AssertionError("downgrade accepted")
    except Reject as e:
        assert e.verdict == "DOWNGRADE", e

    # A ROMFS update whose trial fails: the directory slot runs again.
    with open(rom_v2, "rb") as f:
        b.install_stream(f)
    assert b.state()["pending"] == "b"
    b = boot(fl)
    assert (b.slot, b.version, b.trial, b.app_dir) == ("b", "2.0.0", True, "/rom"), b.reasons
    try:
        b.rollback("self-test failed (migration test)")
    except Reset:
        pass
    b = boot(fl)
    st = b.state()
    assert (b.slot, b.version, b.trial) == ("a", "1.0.0", False), (b.reasons, st)
    assert st["last"].startswith("rolled back: self-test of 2.0.0 failed"), st
    assert slots.exists("/data/slots/a.bnd")

    # The next ROMFS update confirms itself: floors rise, the directory slots go.
    with open(rom_v3, "rb") as f:
        b.install_stream(f)
    b = boot(fl)
    assert (b.slot, b.version, b.trial) == ("b", "3.0.0", True), b.reasons
    assert b.confirm()
    st = b.state()
    assert (st["active"], st["pending"], st["sec_floor"]) == ("b", None, 6), st
    assert not slots.exists("/data/slots/a") and not slots.exists("/data/slots/a.bnd")
    assert sorted(os.listdir("/data/slots")) == ["state.json"], os.listdir("/data/slots")
    b = boot(fl)
    assert (b.slot, b.version, b.trial) == ("b", "3.0.0", False), b.reasons
    assert flash.Flash.all_overprograms == 0
    flash.unmount()
    print("OK")


main(*sys.argv[1:6])
