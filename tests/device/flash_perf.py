# Device side of test_flash: how long the boot stage's reads cost. Reads a 256 KiB file
# through littlefs and the simulated flash (best of several runs) and prints JSON.
# Usage: micropython flash_perf.py IMAGE PATH
import hashlib
import json
import micropython
import sys
import time

import flash

image, path = sys.argv[1], sys.argv[2]
buf = bytearray(4096)
fl = flash.Flash(image)
t = time.ticks_us()
flash.mount_data(fl)
mount_us = time.ticks_diff(time.ticks_us(), t)


def read(h=None):
    t = time.ticks_us()
    n = 0
    with open("/data/" + path, "rb") as f:
        micropython.heap_lock()  # the read path allocates nothing
        try:
            while True:
                k = f.readinto(buf)
                if not k:
                    break
                if h:
                    h.update(buf if k == len(buf) else buf[:k])
                n += k
        finally:
            micropython.heap_unlock()
    return time.ticks_diff(time.ticks_us(), t), n


best = min(read()[0] for _ in range(7))
size = read()[1]
best_hash = min(read(hashlib.sha256())[0] for _ in range(7))
print(json.dumps({"bytes": size, "mount_ms": mount_us / 1000, "read_ms": best / 1000,
                  "read_sha256_ms": best_hash / 1000}))
