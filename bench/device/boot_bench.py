# Boot-time verification benchmark on the simulated board.
#   micropython boot_bench.py SIMDIR RUNS   -> JSON: median ms of a full slot verification as the
#   boot stage does it (the ROMFS image in the primary region: certificate, header signature,
#   one SHA-256 pass over the region where the board maps it; on this board the map is a copy
#   of the region read from the flash image, and that read is timed with the verification), of
#   one signature check plus hashing the same bytes in RAM, and the image size.
import hashlib
import json
import sys
import time

import bootstage
import bundle
import flash
import romslots
import romwindow
from servicejig import sim_config


class NoHal:
    def reset(self):
        pass


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def _target(path, anchors, policy, buf, space):
    # (primary region, the image in RAM, signature, header, cert) of another device's flash
    part = flash.Flash(path + "/flash.bin").partition("romfs")
    window = romwindow.RomWindow(part)
    v = romslots.verify(part, anchors, policy, buf, space, window)
    blob = bytearray(v.header.payload_len)
    romslots.read(part, romslots.image_offset(len(v.prefix)), memoryview(blob))
    return [part, window, blob, bytes(v.prefix[-64:]), v.header.raw, v.cert, [], []]


def main(simdir, runs, *others):
    fl = flash.Flash(simdir + "/flash.bin")
    flash.mount_factory(fl)
    flash.mount_data(fl)
    cfg = sim_config()
    anchors, floor = bootstage.load_anchors(cfg["anchors"])
    boot = bootstage.Boot(NoHal(), cfg, anchors, floor, bytearray(bootstage.BUF_SIZE), print)
    st = boot.state()
    policy = boot.policy(st)
    part = cfg["regions"].primary
    window = cfg["regions"].window
    space = boot.space()
    v = romslots.verify(part, anchors, policy, boot.buf, space, window)
    size = v.header.payload_len
    sig = bytes(v.prefix[-64:])
    header = v.header.raw
    blob = bytearray(size)  # the same bytes in RAM, for the baseline
    romslots.read(part, romslots.image_offset(len(v.prefix)), memoryview(blob))
    more = [_target(o, anchors, policy, boot.buf, space) for o in others]
    prefix = bytearray(v.prefix)  # the signed prefix in RAM, for the prefix-in-RAM baseline
    full, base, auth = [], [], []
    for _ in range(runs):
        # Other devices (the files slope) in the same loop: the same moments, the same load.
        for part2, window2, blob2, sig2, head2, cert2, full2, base2 in more:
            t0 = time.ticks_us()
            romslots.verify(part2, anchors, policy, boot.buf, space, window2)
            t1 = time.ticks_us()
            assert bundle.signature_ok(cert2.key_alg, cert2.key, head2, sig2)
            hashlib.sha256(blob2).digest()
            full2.append(time.ticks_diff(t1, t0))
            base2.append(time.ticks_diff(time.ticks_us(), t1))
        t0 = time.ticks_us()
        romslots.verify(part, anchors, policy, boot.buf, space, window)
        t1 = time.ticks_us()
        ok = bundle.signature_ok(v.cert.key_alg, v.cert.key, header, sig)
        hashlib.sha256(blob).digest()
        t2 = time.ticks_us()
        assert ok
        # The same authentication of the same prefix (certificate, signature, rules) and the
        # same hash, all from RAM: what is left is what the storage costs.
        bundle.authenticate_prefix(prefix, anchors, policy)
        hashlib.sha256(blob).digest()
        t3 = time.ticks_us()
        full.append(time.ticks_diff(t1, t0))
        base.append(time.ticks_diff(t2, t1))
        auth.append(time.ticks_diff(t3, t2))
    # The parts of a verification, to say where the time goes: the certificate's root
    # signature (a second Ed25519 check, which the baseline does not have) and the reads.
    t0 = time.ticks_us()
    for _ in range(runs):
        bundle.check_cert(v.cert, anchors, policy["key_floor"])
    cert_ms = (time.ticks_diff(time.ticks_us(), t0)) / runs / 1000
    return {"slot_bytes": size, "boot_verify_ms": median(full) / 1000,
            "one_verify_plus_hash_ms": median(base) / 1000, "cert_check_ms": cert_ms,
            "prefix_in_ram_plus_hash_ms": median(auth) / 1000,
            "others": [{"slot_bytes": len(m[2]), "boot_verify_ms": median(m[6]) / 1000,
                        "one_verify_plus_hash_ms": median(m[7]) / 1000} for m in more]}


print(json.dumps(main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])))
