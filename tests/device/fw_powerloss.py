# Power-loss sweep of firmware updates (mcuboot's perm_with_fails on the simulated NOR flash,
# through the fake esp32.Partition and the modelled ESP-IDF bootloader). Run the scenario once
# to count its flash operations, then for every operation n: restore the image, cut the power
# at n, power on again and require that the bootloader starts a valid image, that it is the
# old or the new one, and that the boot stage then reaches a consistent state.
#   update:   install, restart into the trial, confirm
#   rollback: install, restart into the trial, restart without confirming (bootloader rollback)
# Usage: micropython fw_powerloss.py BASE_IMAGE WORK_IMAGE BUNDLE update|rollback NEW OLD [SHAPES]
#   SHAPES: comma-separated tear shapes of flash.cut_at, "legacy" (the default) or 0, 1, 2
import json
import sys


import bootstage
import fakepart
import flash
import fwupdate
from fakepart import Partition
from flash import PowerCut

CFG = {"board": "esp32", "product": "iot-thermostat", "root": "/data", "chip": "esp32"}
base, work, bundle_path, kind, new, old = sys.argv[1:7]
SHAPES = [None if x == "legacy" else int(x)
          for x in (sys.argv[7] if len(sys.argv) > 7 else "legacy").split(",")]
template = work + ".template"
buf = bytearray(4096)


def power_on(fl):
    """The bootloader, then the boot stage's firmware check. Returns (Firmware, result) or
    (None, why) when nothing boots."""
    flash.unmount()
    label = fakepart.boot(fl, chip_id=0)
    if label is None:
        return None, "UNBOOTABLE: " + "; ".join(fakepart.boot_log())
    flash.mount_factory(fl)
    flash.mount_data(fl)
    anchors, floor = bootstage.load_anchors("/factory/anchors.json")
    fw = fwupdate.Firmware(Partition, CFG, anchors, floor, lambda msg: None)
    return fw, fw.boot_check(buf)


def running_version():
    raw = bytearray(32)
    Partition(Partition.RUNNING).readblocks(0, raw, 48)
    return bytes(raw).split(b"\0")[0].decode()


def scenario(fl):
    fw, _ = power_on(fl)
    with open(bundle_path, "rb") as f:
        fw.install_stream(f, buf)
    fw, r = power_on(fl)
    assert r == "trial", r
    if kind == "update":
        fw.confirm()
    else:
        fw, r = power_on(fl)
        assert r == "rolled_back", r
    flash.unmount()


def check():
    """Power on after the cut, finish what the device would do (confirm a trial in `update`),
    power on again: both boots must run old or new, the second one settled."""
    fl = flash.Flash(work)
    try:
        fw, r = power_on(fl)
        if fw is None:
            return r
        first = running_version()
        if first not in (old, new):
            return "WRONG IMAGE " + first
        outcome = first + (" " + r if r != "none" else "")
        if r == "trial" and kind == "update":
            fw.confirm()
        fw, r2 = power_on(fl)
        if fw is None:
            return "SECOND BOOT " + r2
        second = running_version()
        if r == "trial" and kind == "update" and second != new:
            return "CONFIRMED TRIAL LOST: " + second
        if second not in (old, new) or fw.state()["pending"] not in (None, fw.label):
            return "INCONSISTENT: %s %s %s" % (second, r2, fw.state())
        return outcome
    finally:
        flash.unmount()
        fl.close()


def main():
    # Prepare the template: first power-on of the factory-flashed board (vfs formatted,
    # otadata initialised), outside the counted operations.
    flash.copy_image(base, template)
    fl = flash.Flash(template)
    fw, r = power_on(fl)
    assert fw is not None and r == "none" and running_version() == old
    flash.unmount()
    fl.close()
    flash.copy_image(template, work)
    fl = flash.Flash(work)
    scenario(fl)
    total = fl.ops
    # Our raw writers (the firmware writer, otadata) never program over unerased bits.
    assert flash.Flash.all_overprograms == 0, flash.Flash.all_overprograms
    fl.close()
    final = check()
    outcomes, failures = {}, []
    for shape in SHAPES:
        for n in range(1, total + 1):
            flash.copy_image(template, work)
            fl = flash.Flash(work, seed=n * 3 + (shape or 0))
            fl.cut_at(n, shape)
            try:
                scenario(fl)
                failures.append("cut %d: the scenario finished without the power cut" % n)
            except PowerCut:
                pass
            flash.unmount()
            fl.close()
            outcome = check()
            if outcome.split(" ")[0] not in (old, new) or outcome.endswith("failed"):
                failures.append("cut %d shape %s: %s" % (n, shape, outcome))
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {"kind": kind, "cut_points": total, "states": total * len(SHAPES), "final": final,
            "outcomes": outcomes, "failures": failures}


print(json.dumps(main()))
