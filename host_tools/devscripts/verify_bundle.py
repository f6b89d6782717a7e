# Runs the device's own installer on a bundle into a scratch folder, to give the exact verdict a
# device would give. micropython verify_bundle.py BUNDLE ANCHORS.json POLICY.json SCRATCHDIR
import json
import os
import sys

import bootstage
import slots
from bundle import Reject


def main(bundle_path, anchors_path, policy_path, scratch):
    anchors, floor = bootstage.load_anchors(anchors_path)
    with open(policy_path) as f:
        policy = json.loads(f.read())
    policy["key_floor"] = max(policy["key_floor"], floor)
    try:
        os.mkdir(scratch + "/slots")
    except OSError:
        pass
    buf = bytearray(bootstage.BUF_SIZE)
    try:
        with open(bundle_path, "rb") as f:
            v = slots.install_stream(f, buf, scratch, scratch + "/slots/state.json", anchors,
                                     policy)
    except Reject as e:
        return {"ok": False, "verdict": e.verdict, "text": e.detail}
    return {"ok": True, "verdict": "OK", "text": "signature, rules and %d file hashes verified"
            % len(v.manifest["files"]), "key_serial": v.cert.serial}


print(json.dumps(main(*sys.argv[1:5])))
