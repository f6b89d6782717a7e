# Device side of test_flash: files the host put in vfs/fctry read back byte-exact; the
# device writes files for the host to read; fctry refuses writes.
# Usage: micropython flash_fs.py IMAGE MANIFEST.json   (manifest: {part: {path: sha256hex}})
import hashlib
import json
import os
import sys

import flash


def digest(path):
    h = hashlib.sha256()
    buf = bytearray(1000)  # not a divisor of the block size: reads straddle blocks
    mv = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(mv[:n])
    return h.digest()


def walk(top, rel=""):
    out = []
    for name, kind, *_ in os.ilistdir(top):
        path = rel + "/" + name if rel else name
        if kind == 0x4000:
            out += walk(top + "/" + name, path)
        else:
            out.append(path)
    return out


def pattern(n, seed):
    b = bytearray(n)
    for i in range(n):
        b[i] = (i * 31 + seed) & 0xFF
    return b


image, manifest = sys.argv[1], sys.argv[2]
with open(manifest) as f:
    want = json.load(f)

fl = flash.Flash(image)
flash.mount_data(fl, "/data")
flash.mount_factory(fl, "/factory")

for part, mount in (("vfs", "/data"), ("fctry", "/factory")):
    files = want[part]
    assert sorted(walk(mount)) == sorted(files), (part, walk(mount))
    for path, hexdigest in files.items():
        got = digest(mount + "/" + path)
        assert got == bytes.fromhex(hexdigest), (part, path)

# The device writes; the host reads these back with flashimage.
os.mkdir("/data/dev")
os.mkdir("/data/dev/nested")
os.mkdir("/data/dev/nested/deep")
with open("/data/dev/nested/deep/out.bin", "wb") as f:
    f.write(pattern(9000, 5))
with open("/data/dev/small.txt", "w") as f:
    f.write("written on the device\n")

# fctry is read-only: through the VFS and through the raw block device.
for attempt in (lambda: open("/factory/new.txt", "w"),
                lambda: os.mkdir("/factory/d"),
                lambda: os.remove("/factory/" + list(want["fctry"])[0])):
    try:
        attempt()
        raise AssertionError("write to /factory succeeded")
    except OSError:
        pass
ro = fl.partition("fctry", readonly=True)
ops = fl.ops
for attempt in (lambda: ro.writeblocks(0, b"\x00", 4000), lambda: ro.ioctl(6, 1)):
    try:
        attempt()
        raise AssertionError("raw write to read-only fctry succeeded")
    except OSError:
        pass
assert fl.ops == ops

print("OK")
