# The owner mark's counter (bootloader/marks.py) on the strict NOR model, alone: parity through
# many sector carry-overs; a power cut at every flash operation of a run of sets that appends,
# opens and carries, in every tear shape, then a second cut at every operation of the
# recovery, then recovery to the end (the parity is the old or the new one, stable, and the
# next set works); one flipped bit at rest in every bit of the region (and in every bit of every
# third byte in two more states): parity unchanged, and a set after it still works; never a
# program over bits that were not erased.
#   micropython marks_nor.py WORKDIR   -> "marks: ..." lines, then OK
import sys

import flash
import marks
from flash import PowerCut

TABLE = "marks, data, 0x43, 0x0, 0x2000\n"
WORK = sys.argv[1] + "/marks.bin"
SAVED = sys.argv[1] + "/marks.saved"


def blank():
    with open(WORK, "wb") as f:
        f.write(b"\xff" * 0x2000)
    with open(WORK + ".csv", "w") as f:
        f.write(TABLE)


def open_fl(seed=1):
    fl = flash.Flash(WORK, WORK + ".csv", seed=seed)
    return fl, marks.Marks(fl.partition("marks"))


def save():
    flash.copy_image(WORK, SAVED)


def restore():
    flash.copy_image(SAVED, WORK)


def check_clean(fl):
    assert fl.overprograms == 0, "a program over bits that were not erased"


# --- parity through carry-overs -----------------------------------------------------------
blank()
fl, m = open_fl()
assert m.parity() == 0 and m.value() is None  # never written
assert m.set(0) and m.value() == 0  # written even: a reset is told from "never"
assert not m.set(0)  # nothing to write for the parity it already has
p = 0
for k in range(3 * (marks.ENTRIES - marks.FIRST) + 7):
    p ^= 1
    assert m.set(p)
    assert m.parity() == p, k
    assert not m.set(p)
check_clean(fl)
print("marks: %d sets, %d ops, %d erases of used sectors" % (k + 1, fl.ops, fl.used_erases))
assert fl.used_erases >= 1  # the run carried the parity over at least once
fl.close()


# --- power cuts ---------------------------------------------------------------------------
def prefill(events):
    """The region with sector 0 open and `events` events appended (parity = events & 1)."""
    blank()
    fl, m = open_fl()
    p = 0
    for _ in range(events):
        p ^= 1
        m.set(p)
    fl.close()
    save()
    return p


def cut_sweep(events):
    """Five sets (append, fill, carry over, append) from `events` events: cut at every op
    in every shape, recover (with a second cut at every op of the recovery)."""
    start = prefill(events)
    # Count the ops of each set, to know which set an op belongs to.
    restore()
    fl, m = open_fl()
    bounds = []
    p = start
    for _ in range(5):
        before = p
        p ^= 1
        m.set(p)
        bounds.append((fl.ops, before, p))
    total = fl.ops
    check_clean(fl)
    fl.close()
    states = seconds = 0
    for n in range(1, total + 1):
        allowed = None
        for end, before, after in bounds:
            if n <= end:
                allowed = (before, after)
                break
        for shape in (0, 1, 2):
            seed = n * 7 + shape
            restore()
            fl, m = open_fl(seed)
            fl.cut_at(n, shape)
            try:
                q = start
                for _ in range(5):
                    q ^= 1
                    m.set(q)
                raise AssertionError("no cut at %d" % n)
            except PowerCut:
                pass
            over = fl.overprograms
            fl.close()
            assert over == 0, (n, shape)
            flash.copy_image(WORK, WORK + ".cut")
            # Recovery alone, counted; then a second cut at every one of its operations.
            fl, m = open_fl(seed)
            m.repair()
            rec_ops = fl.ops
            fl.close()
            for second in range(0, rec_ops + 1):
                flash.copy_image(WORK + ".cut", WORK)
                if second:
                    fl, m = open_fl(seed + second)
                    fl.cut_at(second, (shape + second) % 3)
                    try:
                        m.repair()
                        raise AssertionError("no second cut")
                    except PowerCut:
                        pass
                    assert fl.overprograms == 0
                    fl.close()
                    seconds += 1
                fl, m = open_fl(seed)
                got = m.parity()
                m.repair()
                again = m.parity()
                assert got == again, ("repair changed the parity", n, shape, second)
                assert got in allowed, (n, shape, second, got, allowed)
                cur, info = m.repair()
                assert cur is None or not info.weak, "a torn entry left in force"
                fl.close()
                fl, m = open_fl(seed)
                assert m.parity() == got  # stable over a power cycle
                m.set(got ^ 1)
                assert m.parity() == got ^ 1
                check_clean(fl)
                fl.close()
                states += 1
    return total, states, seconds


for events in (marks.ENTRIES - marks.FIRST - 2, 1, 0):
    total, states, seconds = cut_sweep(events)
    print("marks: cuts after %d events: %d ops, %d states, %d cut again in recovery"
          % (events, total, states, seconds))
    assert states >= 3 * total and seconds >= 1


# --- bit flips at rest -------------------------------------------------------------------
def flip_sweep(name, events, step):
    p = prefill(events)
    checked = 0
    for addr in range(0, 0x2000, step):
        for bit in range(8):
            restore()
            fl, m = open_fl()
            fl.flip(addr, bit)
            assert m.parity() == p, (name, hex(addr), bit)
            if (addr * 8 + bit) % 61 == 0:  # and the next set still works, over nothing
                m.set(p ^ 1)
                assert m.parity() == p ^ 1, (name, hex(addr), bit)
                check_clean(fl)
            fl.close()
            checked += 1
    print("marks: %d flips at rest (%s), parity kept" % (checked, name))


flip_sweep("never set", 0, 3)  # every bit of every third byte
flip_sweep("open, odd", 3, 1)
# After a carry-over: sector 1 in force, sector 0 erased.
p = prefill(marks.ENTRIES - marks.FIRST + 3)
fl, m = open_fl()
assert m.scan(0).blank and m.scan(1).open and m.parity() == p
fl.close()
flip_sweep("carried over", marks.ENTRIES - marks.FIRST + 3, 3)
print("OK")
