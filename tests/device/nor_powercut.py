# Device side of test_powerloss's NOR-model test: every tear shape of a program and of an
# erase leaves the cells the way the shape says, from a seeded generator (same seed, same
# cells), and the flash is dead after the cut.
# Usage: micropython nor_powercut.py IMAGE   (a blank image)
import sys

import flash

SECTOR = 4096
OLD = bytes((i * 37 + 11) & 0xFF for i in range(SECTOR))
NEW = bytes((i * 91 + 3) & 0xFF for i in range(SECTOR))


def raises(exc, fn):
    try:
        fn()
    except exc:
        return
    raise AssertionError("no " + exc.__name__)


def sector(fl, addr):
    b = bytearray(SECTOR)
    fl.read(addr, b)
    return b


def tear(kind, shape, seed, addr=0x9000):
    """Prepare the sector (OLD programmed over a half-programmed state), tear one op, return
    the cells afterwards."""
    fl = flash.Flash(sys.argv[1], seed=seed)
    fl.erase(addr)
    if kind == "program":
        fl.program(addr, b"\xff" * (SECTOR // 2) + OLD[SECTOR // 2:])
        before = sector(fl, addr)
        fl.cut_at(fl.ops + 1, shape)
        raises(flash.PowerCut, lambda: fl.program(addr, NEW))
    else:
        fl.program(addr, OLD)
        before = sector(fl, addr)
        fl.cut_at(fl.ops + 1, shape)
        raises(flash.PowerCut, lambda: fl.erase(addr))
    assert fl.dead and fl.torn[0] == kind, fl.torn
    raises(flash.PowerCut, lambda: fl.read(addr, bytearray(4)))
    fl.close()
    fl = flash.Flash(sys.argv[1])
    after = sector(fl, addr)
    fl.close()
    return before, after


def bits(b):
    n = 0
    for x in b:
        while x:
            n += x & 1
            x >>= 1
    return n


full = bytes(a & b for a, b in zip(b"\xff" * (SECTOR // 2) + OLD[SECTOR // 2:], NEW))
for shape in ("prefix", "suffix", "scatter"):
    before, after = tear("program", shape, 5)
    assert tear("program", shape, 5)[1] == after, shape  # reproducible
    assert tear("program", shape, 6)[1] != after, shape  # and the seed matters
    for i in range(SECTOR):
        # A torn program can only clear bits that the full program clears.
        assert after[i] & full[i] == full[i] and after[i] & ~before[i] == 0, (shape, i)
    reached = [i for i in range(SECTOR) if after[i] == full[i] and before[i] != full[i]]
    assert reached and len(reached) < sum(1 for i in range(SECTOR) if before[i] != full[i])
    if shape == "prefix":
        assert after[:reached[-1] + 1] == full[:reached[-1] + 1]
        assert after[reached[-1] + 1:] == before[reached[-1] + 1:]
    elif shape == "suffix":
        assert after[reached[0]:] == full[reached[0]:]
        assert after[:reached[0]] == before[:reached[0]]
    else:  # scatter: partly cleared bytes, spread over the whole sector
        partial = [i for i in range(SECTOR) if after[i] not in (before[i], full[i])]
        assert len(partial) > 100 and partial[0] < 512 and partial[-1] > SECTOR - 512
before, after = tear("program", None, 5)
assert after[:SECTOR // 2] == full[:SECTOR // 2] and after[SECTOR // 2:] == before[SECTOR // 2:]

zeros = SECTOR * 8 - bits(OLD)
before, after = tear("erase", "half", 5)
assert after[:SECTOR // 2] == b"\xff" * (SECTOR // 2) and after[SECTOR // 2:] == OLD[SECTOR // 2:]
for shape, pct in (("residual", 4.5), ("late", 0.35)):
    before, after = tear("erase", shape, 5)
    assert tear("erase", shape, 5)[1] == after
    left = SECTOR * 8 - bits(after)  # 0 bits still 0
    for a, o in zip(after, OLD):
        assert a & o == o  # only old 0 bits can stay 0
    got = 100 * left / zeros
    assert abs(got - pct) < pct * 0.25 + 0.1, (shape, got)
# A shape index tears programs and erases alike: 1 is "suffix" for a program, "residual" for
# an erase.
fl = flash.Flash(sys.argv[1])
fl.cut_at(fl.ops + 1, 1)
raises(flash.PowerCut, lambda: fl.erase(0x9000))
assert fl.torn == ("erase", "residual")
fl.close()
print("OK")
