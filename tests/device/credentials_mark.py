# The owner mark in credentials.py, on the NOR model (a littlefs data partition and the raw
# `marks` region, bootloader/marks.py): both copies of the owner record removed behind its
# back (what a littlefs rollback does) is RECORD_LOST, never the label password; a factory
# reset brings the label back; a record a rollback brings back after a reset is stale (the
# label applies; settle removes it); a change after it works; a device from before the mark is
# marked at start-up (settle); a power cut at every flash operation of a
# change and of a factory reset, in every tear shape, never leaves the label password working
# while an owner password was in force, and a repeated reset always completes.
#   micropython credentials_mark.py WORKDIR   -> "mark: ..." lines, then OK
import os
import sys

import flash
import store
from credentials import CredentialError, Credentials, make_record
from flash import PowerCut
from marks import Marks

TABLE = "vfs, data, fat, 0x0, 0x20000\nmarks, data, 0x43, 0x20000, 0x2000\n"
WORK = sys.argv[1] + "/cred.bin"
LABEL = "label-k7pq-m2wx"  # test values, not real passwords
OWNER = "owner-9dfh-tr4e"
OWNER2 = "owner-second-77"
FACTORY = "/data/fac/password.json"
RECORD = "/data/auth/password.json"
ITER = 1000


def up(path=WORK, seed=1):
    """Power on: the flash, the data filesystem at /data, the app's Credentials."""
    flash.unmount("/data")
    fl = flash.Flash(path, path + ".csv", seed=seed)
    flash.mount_data(fl, "/data", "vfs")
    return fl, Credentials(FACTORY, RECORD, iterations=ITER, marks=Marks(fl.partition("marks")))


def down(fl):
    flash.unmount("/data")
    fl.close()


def works(c, pw):
    """True/False, or the CredentialError code."""
    try:
        return c.verify(pw)
    except CredentialError as e:
        return e.code


def image(name):
    return sys.argv[1] + "/" + name


# --- a provisioned device: the factory record, blank marks --------------------------------
with open(WORK, "wb") as f:
    f.write(b"\xff" * 0x22000)
with open(WORK + ".csv", "w") as f:
    f.write(TABLE)
fl, c = up()
for d in ("/fac", "/auth", "/auth.1"):
    store.makedirs("/data" + d)
store.save(FACTORY, make_record(LABEL, ITER))
assert works(c, LABEL) is True and not c.owner_set() and c.marks.parity() == 0
down(fl)
flash.copy_image(WORK, image("factory.bin"))

# --- change, then both copies lost behind its back: RECORD_LOST, not the label -------------
fl, c = up()
c.change(LABEL, OWNER, 1000)
assert c.marks.parity() == 1 and works(c, OWNER) is True and works(c, LABEL) is False
down(fl)
flash.copy_image(WORK, image("owner.bin"))
fl, c = up()
for p in ("/data/auth/password.json", "/data/auth.1/password.json"):
    os.remove(p)  # the finding: a littlefs rollback took both directories' entries
assert store.load_record(RECORD)[1] == store.MISSING
assert works(c, LABEL) == "RECORD_LOST" and works(c, OWNER) == "RECORD_LOST"
assert c.owner_set()
try:
    c.login(LABEL, 2000)
    raise AssertionError("the label password logged in after the record was lost")
except CredentialError as e:
    assert e.code == "RECORD_LOST"
# The owner's way out: a factory reset (physical presence), then the label password applies.
c.factory_reset()
assert c.marks.parity() == 0 and works(c, LABEL) is True and not c.owner_set()
# A change after the reset works, and is marked again.
c.change(LABEL, OWNER2, 3000)
assert works(c, OWNER2) is True and works(c, LABEL) is False and c.marks.parity() == 1
old = store.load_record(RECORD)[0]
c.factory_reset()
assert works(c, LABEL) is True and works(c, OWNER2) is False and c.marks.parity() == 0
# A rollback brings the removed record back behind its back: stale, the label applies.
store.save_record(RECORD, old)
assert works(c, OWNER2) is False and works(c, LABEL) is True and not c.owner_set()
assert c.settle() and store.load_record(RECORD)[1] == store.MISSING  # and it is removed
assert not c.settle()
assert fl.overprograms == 0
down(fl)
flash.copy_image(WORK, image("reset.bin"))
print("mark: lost record -> RECORD_LOST; reset -> label; change after reset -> owner")

# --- migration: a record from before the mark gets marked at start-up (settle) -----------
flash.copy_image(image("factory.bin"), WORK)
fl, c = up()
store.save_record(RECORD, make_record(OWNER, ITER))  # as an older firmware left it
assert c.marks.parity() == 0
assert c.login(OWNER, 1000) is True  # before the start-up settles it, the record decides
assert c.marks.value() is None  # and a login writes nothing
assert c.settle() and not c.settle()  # marked once; nothing more to write
assert c.marks.parity() == 1
os.remove("/data/auth/password.json")
os.remove("/data/auth.1/password.json")
assert works(c, LABEL) == "RECORD_LOST"
down(fl)
# No record: settle marks nothing.
flash.copy_image(image("factory.bin"), WORK)
fl, c = up()
assert not c.settle() and c.marks.value() is None
# A reset of a device whose mark was never written writes it even: a record that a rollback
# brings back after that is stale.
store.save_record(RECORD, make_record(OWNER, ITER))  # as an older firmware left it
c.factory_reset()
assert c.marks.value() == 0
store.save_record(RECORD, make_record(OWNER, ITER))
assert works(c, OWNER) is False and works(c, LABEL) is True
down(fl)
print("mark: migration at start-up")


# --- power cuts during a change and during a factory reset --------------------------------
def ops_of(base, fn):
    flash.copy_image(base, WORK)
    fl, c = up()
    start = fl.ops
    fn(c)
    n = fl.ops - start
    down(fl)
    return start, n


def cut_sweep(name, base, fn, allowed):
    start, n = ops_of(base, fn)
    outcomes = {}
    for k in range(1, n + 1):
        for shape in (0, 1, 2):
            flash.copy_image(base, WORK)
            fl, c = up(seed=k * 3 + shape)
            fl.cut_at(start + k, shape)
            try:
                fn(c)
                raise AssertionError("%s: no cut at %d" % (name, k))
            except PowerCut:
                pass
            assert fl.overprograms == 0 or fl.torn is not None
            flash.unmount("/data")
            fl.close()
            fl, c = up(seed=k)
            c.settle()  # the app's start-up
            got = (works(c, LABEL), works(c, OWNER))
            assert got in allowed, (name, k, shape, got)
            outcomes[got] = outcomes.get(got, 0) + 1
            if got[0] == "RECORD_LOST":  # the owner resets with presence: it completes
                c.factory_reset()
                assert works(c, LABEL) is True, (name, k, shape)
            down(fl)
    print("mark: %s: %d ops cut in 3 shapes: %s"
          % (name, n, sorted(str(o) for o in outcomes.items())))
    return outcomes


before, after = (True, False), (False, True)
got = cut_sweep("change", image("factory.bin"), lambda c: c.change(LABEL, OWNER, 1000),
                (before, after))
assert before in got and after in got
got = cut_sweep("change after a reset", image("reset.bin"),
                lambda c: c.change(LABEL, OWNER, 1000), (before, after))
assert before in got  # (after: only where the torn mark reads as written)
got = cut_sweep("factory reset", image("owner.bin"), lambda c: c.factory_reset(),
                (after, before, ("RECORD_LOST", "RECORD_LOST")))
lost = ("RECORD_LOST", "RECORD_LOST")
assert after in got and lost in got  # a reset the cut stopped; one cut between its steps
print("OK")
