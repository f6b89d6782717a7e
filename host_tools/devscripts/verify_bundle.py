# Runs the device's own installer on a bundle, to give the exact verdict a device would give: a
# ROMFS app image into a scratch region of simulated flash (romslots.Installer, which also reads
# it back), any other bundle into a scratch folder (directory slots).
#   micropython verify_bundle.py BUNDLE ANCHORS.json POLICY.json SCRATCHDIR
import json
import os
import sys

import bootstage
import bundle
import flash
import romslots
import slots
import slotstate
from bundle import Reject


def _romfs_bundle(path):
    # Which installer gives the verdict: decided on the unauthenticated manifest (the
    # installer authenticates everything itself); None when the bundle is a ROMFS image.
    try:
        with open(path, "rb") as f:
            pre = bundle.read_prefix(f)
        h = bundle.parse_header(pre)
        m = json.loads(bytes(pre[64:64 + h.manifest_len]))
        files = m["files"]
        if h.kind == bundle.KIND_APP and len(files) == 1 and files[0]["path"] == romslots.IMAGE:
            return romslots.image_offset(len(pre)) + h.payload_len
    except (Reject, ValueError, KeyError, TypeError, IndexError, OSError):
        pass
    return None


def _region(scratch, size):
    size = (size + romslots.SECTOR - 1) // romslots.SECTOR * romslots.SECTOR
    path = scratch + "/region.bin"
    blank = b"\xff" * romslots.SECTOR
    with open(path, "wb") as f:
        for _ in range(size // romslots.SECTOR):
            f.write(blank)
    return flash.Partition(flash.Flash(path), "scratch", "data", 0x41, 0, size)


def main(bundle_path, anchors_path, policy_path, scratch):
    anchors, floor = bootstage.load_anchors(anchors_path)
    with open(policy_path) as f:
        policy = json.loads(f.read())
    policy["key_floor"] = max(policy["key_floor"], floor)
    buf = bytearray(bootstage.BUF_SIZE)
    size = _romfs_bundle(bundle_path)
    try:
        with open(bundle_path, "rb") as f:
            if size is not None:
                inst = romslots.Installer(_region(scratch, size), "b", anchors, policy,
                                          lambda v: None)
                v = slots.pump(f, buf, inst)
            else:
                try:
                    os.mkdir(scratch + "/slots")
                except OSError:
                    pass
                v = slots.install_stream(f, buf, scratch, slotstate.path(scratch),
                                         anchors, policy)
    except Reject as e:
        return {"ok": False, "verdict": e.verdict, "text": e.detail}
    what = "the ROMFS image's hash (as written and read back)" if size is not None else \
        "%d file hashes" % len(v.manifest["files"])
    return {"ok": True, "verdict": "OK", "text": "signature, rules and %s verified" % what,
            "key_serial": v.cert.serial}


print(json.dumps(main(*sys.argv[1:5])))
