# The ROMFS slots' swap (bootloader/romslots.py) on the strict NOR model, alone: two small
# regions with images of different lengths, exchanged with a power cut at every flash operation
# in every tear shape, then a second cut at every operation of the recovery, then recovery to
# the end: the regions must hold each other's bytes exactly, and no program may ever cover
# bits that were not erased.
#   micropython romfs_swap.py WORKDIR
import struct
import sys

import flash
import romslots
from flash import PowerCut

SECTOR = 4096
TABLE = """romfs,   data, 0x8f, 0x0,    0x6000
romfs_b, data, 0x41, 0x6000, 0x6000
romfs_s, data, 0x42, 0xc000, 0x2000
"""


def image(seed, payload):
    """A region's bytes: a parseable bundle header (romslots.used() reads its lengths only),
    then seeded bytes up to the end of the image."""
    mlen, clen = 100, 122
    plen = 64 + mlen + clen + 64
    head = b"IOTB" + struct.pack("<BBBBIHHI", 1, 0, 1, 0, mlen, clen, 64, payload) + bytes(44)
    n = romslots.image_offset(plen) + payload
    out = bytearray(n)
    out[:64] = head
    x = seed
    for i in range(64, n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = x >> 16 & 0xFF
    return out


def regions(fl):
    return romslots.Regions(fl.partition("romfs"), fl.partition("romfs_b"),
                            fl.partition("romfs_s"), None)


def content(part, n):
    buf = bytearray(n)
    part.readblocks(0, buf)
    return buf


def fresh(work, a, b):
    with open(work, "wb") as f:
        f.write(b"\xff" * 0xE000)
    fl = flash.Flash(work, work + ".csv")
    fl.program(0, a)
    fl.program(0x6000, b)
    fl.close()


def recover(work, cut=None, shape=0):
    """Power on: resume an unfinished swap (as the boot stage's _settle does). Returns the
    number of flash operations the recovery took, or None if it was cut."""
    fl = flash.Flash(work, work + ".csv")
    if cut:
        fl.cut_at(cut, shape)
    try:
        romslots.Swap(regions(fl), bytearray(SECTOR)).resume()
        return fl.ops
    except PowerCut:
        return None
    finally:
        fl.close()


def check(work, a, b, label):
    fl = flash.Flash(work, work + ".csv")
    r = regions(fl)
    assert content(r.primary, len(b)) == b, label + ": primary"
    assert content(r.secondary, len(a)) == a, label + ": secondary"
    fl.close()


def main(workdir):
    work = workdir + "/swap.bin"
    with open(work + ".csv", "w") as f:
        f.write(TABLE)
    a, b = image(7, 9000), image(11, 3000)  # 3 sectors against 2: the longer one decides
    fresh(work, a, b)
    fl = flash.Flash(work, work + ".csv")
    romslots.Swap(regions(fl), bytearray(SECTOR)).start(1)
    total = fl.ops
    fl.close()
    check(work, a, b, "uncut")
    cuts = seconds = 0
    for n in range(1, total + 1):
        for shape in (0, 1, 2):
            fresh(work, a, b)
            fl = flash.Flash(work, work + ".csv")
            fl.cut_at(n, shape)
            try:
                romslots.Swap(regions(fl), bytearray(SECTOR)).start(1)
                raise AssertionError("no cut at %d" % n)
            except PowerCut:
                pass
            fl.close()
            cuts += 1
            with open(work, "rb") as f:
                saved = f.read()
            ops = recover(work)
            label = "cut %d shape %d" % (n, shape)
            first = flash.Flash(work, work + ".csv")
            began = romslots.Swap(regions(first), bytearray(SECTOR)).first()
            first.close()
            if began is None:  # cut before BEGIN was written: the swap starts over
                fl = flash.Flash(work, work + ".csv")
                romslots.Swap(regions(fl), bytearray(SECTOR)).start(1)
                fl.close()
                check(work, a, b, label + " (started over)")
                continue
            check(work, a, b, label)
            # Second cut: at every operation of the recovery, then recover to the end.
            for m in range(1, (ops or 0) + 1):
                with open(work, "wb") as f:
                    f.write(saved)
                assert recover(work, m, (n + m) % 3) is None, label
                recover(work)
                check(work, a, b, label + ", second cut %d" % m)
                seconds += 1
    assert flash.Flash.all_overprograms == 0, flash.Flash.all_overprograms
    print("swap: %d operations, %d cuts, %d second cuts" % (total, cuts, seconds))
    print("OK")


main(sys.argv[1])
