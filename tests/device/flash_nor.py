# Device side of test_flash: the NOR rules, argument checks, op counting and the
# block-device protocol, including that the callbacks run with the heap locked.
# Usage: micropython flash_nor.py IMAGE   (a blank image)
import micropython
import sys

import flash

EIO = 5


def raises(exc, fn):
    try:
        fn()
    except exc as e:
        return e
    raise AssertionError("no " + exc.__name__)


fl = flash.Flash(sys.argv[1])
assert fl.size == flash.board_config()["flash_size"]
nvs = fl.partition("nvs")
ota = fl.partition("otadata")
assert (nvs.offset, nvs.size) == (0x9000, 0x6000)
assert nvs.ioctl(4, 0) == 6 and nvs.ioctl(5, 0) == 4096
assert nvs.ioctl(1, 0) == 0 and nvs.ioctl(2, 0) == 0 and nvs.ioctl(3, 0) == 0
raises(ValueError, lambda: fl.partition("nope"))

buf = bytearray(16)
ops = fl.ops
nvs.readblocks(0, buf)
assert buf == b"\xff" * 16 and fl.ops == ops  # reads are not operations

# Program onto erased bytes works; each program and erase is one operation.
nvs.writeblocks(1, b"hello", 100)
assert fl.ops == ops + 1
nvs.readblocks(1, buf, 100)
assert buf[:5] == b"hello" and buf[5:] == b"\xff" * 11
# A program over bytes that are not erased ANDs, as the cells do (bits only go 1 -> 0), and
# is counted in overprograms: our raw writers' tests assert that they never make one.
assert fl.overprograms == 0
nvs.writeblocks(1, b"\x0f", 100)  # 'h' = 0x68 AND 0x0f = 0x08
nvs.readblocks(1, buf, 96)
assert buf == b"\xff" * 4 + b"\x08ello" + b"\xff" * 7, buf
assert fl.ops == ops + 2 and fl.overprograms == 1
nvs.writeblocks(1, b"\xff", 101)  # writing 1s changes nothing, but it still is one
nvs.readblocks(1, buf, 96)
assert buf[5] == ord("e") and fl.overprograms == 2
# Bytes next to programmed ones are programmable, and not counted.
nvs.writeblocks(1, b"!", 105)
assert fl.overprograms == 2
# Erase then program works again; erasing a sector that held data is counted as used.
used = fl.used_erases
assert nvs.ioctl(6, 1) == 0
assert fl.used_erases == used + 1
nvs.readblocks(1, buf, 96)
assert buf == b"\xff" * 16
nvs.writeblocks(1, b"HELLO", 100)
assert fl.ops == ops + 6 and fl.overprograms == 2

# A program spanning several sectors ANDs over the whole range.
big = bytearray(b"\xa5" * 9000)
for block in (2, 3, 4):
    nvs.ioctl(6, block)
nvs.writeblocks(4, b"\x0f", 800)  # a byte near the end of the range is taken
nvs.writeblocks(2, big, 0)
rb = bytearray(4096)
nvs.readblocks(3, rb)
assert rb == b"\xa5" * 4096
nvs.readblocks(4, rb)
assert rb[799:802] == b"\xa5\x05\xa5" and fl.overprograms == 3
nvs.ioctl(6, 4)

# Bit rot at rest: flip() inverts one bit and is not an operation.
ops = fl.ops
fl.flip(nvs.offset + 4096 + 100, 0)
nvs.readblocks(1, buf, 100)
assert buf[:5] == b"IELLO" and fl.ops == ops
fl.flip(nvs.offset + 4096 + 100, 0)

# The generator is seeded: two flashes with the same seed draw the same numbers.
a, b2 = flash.Flash(sys.argv[1], seed=7), flash.Flash(sys.argv[1], seed=7)
assert [a.rand(1000) for _ in range(5)] == [b2.rand(1000) for _ in range(5)]
assert [a.rand(1 << 30) for _ in range(3)] != [flash.Flash(sys.argv[1], seed=8).rand(1 << 30)
                                               for _ in range(3)]
a.close()
b2.close()
raises(ValueError, lambda: fl.cut_at(fl.ops + 1, "sideways"))

# Basic protocol (no offset): whole blocks, erased first, so it overwrites.
nvs.writeblocks(2, bytearray(b"\x11" * 8192))
nvs.readblocks(2, rb, 0)
assert rb == b"\x11" * 4096
raises(ValueError, lambda: nvs.writeblocks(2, bytearray(100)))

# Partitions are isolated: nvs block 5 is the last; otadata starts right after.
nvs.ioctl(6, 5)
nvs.writeblocks(5, b"\x00" * 4, 4092)
ota.readblocks(0, buf)
assert buf == b"\xff" * 16

# Out of range and unaligned accesses fail clearly and change nothing.
ops = fl.ops
raises(ValueError, lambda: nvs.readblocks(6, buf))
raises(ValueError, lambda: nvs.readblocks(5, bytearray(8), 4092))
raises(ValueError, lambda: nvs.readblocks(0, buf, 4096))
raises(ValueError, lambda: nvs.readblocks(-1, buf))
raises(ValueError, lambda: nvs.writeblocks(6, b"x", 0))
raises(ValueError, lambda: nvs.writeblocks(0, b"x", -1))
raises(ValueError, lambda: nvs.ioctl(6, 6))
raises(ValueError, lambda: fl.erase(0x9000 + 100))
raises(ValueError, lambda: fl.read(fl.size - 4, bytearray(8)))
raises(ValueError, lambda: fl.program(fl.size, b"x"))
assert fl.ops == ops

# The callbacks allocate nothing: run them with the heap locked.
rbuf = bytearray(4096)
wbuf = bytearray(b"\x42" * 64)
micropython.heap_lock()
try:
    nvs.ioctl(6, 0)
    nvs.writeblocks(0, wbuf, 64)
    nvs.readblocks(0, rbuf, 0)
    n = nvs.ioctl(4, 0)
finally:
    micropython.heap_unlock()
assert rbuf[64:128] == wbuf and rbuf[:64] == b"\xff" * 64 and n == 6

print("OK")
