# Boot-time verification benchmark on the simulated board.
#   micropython boot_bench.py SIMDIR RUNS   -> JSON: median ms of a full slot verification, of
#   one signature check plus hashing the same bytes in RAM, and the slot size.
import hashlib
import json
import sys
import time

import bootstage
import bundle
import flash
import slots
from servicejig import sim_config


class NoHal:
    def reset(self):
        pass


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main(simdir, runs):
    fl = flash.Flash(simdir + "/flash.bin")
    flash.mount_factory(fl)
    flash.mount_data(fl)
    cfg = sim_config()
    anchors, floor = bootstage.load_anchors(cfg["anchors"])
    boot = bootstage.Boot(NoHal(), cfg, anchors, floor, bytearray(bootstage.BUF_SIZE), print)
    st = boot.state()
    policy = boot.policy(st)
    v = slots.verify_slot(cfg["root"], "a", anchors, policy, boot.buf)
    size = v.header.payload_len
    sig = v.prefix[-64:]
    blob = bytearray(size)  # the same bytes in RAM, for the baseline
    off = 0
    for f in v.manifest["files"]:
        with open(cfg["root"] + "/slots/a/" + f["path"], "rb") as fh:
            off += fh.readinto(memoryview(blob)[off:off + f["size"]])
    full, base = [], []
    for _ in range(runs):
        t0 = time.ticks_us()
        slots.verify_slot(cfg["root"], "a", anchors, policy, boot.buf)
        t1 = time.ticks_us()
        ok = bundle.signature_ok(v.cert.key_alg, v.cert.key, v.header.raw, sig)
        hashlib.sha256(blob).digest()
        t2 = time.ticks_us()
        assert ok
        full.append(time.ticks_diff(t1, t0))
        base.append(time.ticks_diff(t2, t1))
    return {"slot_bytes": size, "boot_verify_ms": median(full) / 1000,
            "one_verify_plus_hash_ms": median(base) / 1000}


print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
