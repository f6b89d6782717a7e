# Device side of test_pages: "delete my data" and the factory-reset wipe against power cuts, on
# a small data partition. Count the flash programs and erases of one deletion, then for each
# of them in turn (inside the two free-space fills, where every step is alike, every 8th):
# restore the image, cut the power there, reboot (remount, recover the interrupted directory
# rebuild, resume the deletion), and require that the deletion either finished (no personal
# datum anywhere in the raw partition, the configuration kept) or never started (everything
# intact: it was cut before its marker was stored).
#   micropython privacy_powercut.py WORKDIR personal|factory    -> "OK <ops> <cuts>"
import asyncio
import sys


import erase
import flash
import store
from flash import PowerCut
from privacy import Privacy
from thermostat import Thermostat

SIZE = 0x40000  # 64 blocks: every free block gets erased twice, so keep the sweep short
NAME = "Qwxyzv Haus"
work, mode = sys.argv[1], sys.argv[2]
# Personal data, and in a factory reset also every owner's password record (old ones too).
NEEDLES = (b"Qwxyzv", b'"06:4', b"set point", b'"granted": true') + (
    (b"owner-hash-",) if mode == "factory" else ())
IMAGE, TEMPLATE, TABLE = work + "/flash.bin", work + "/template.bin", work + "/table.csv"
WIPE = ("/data/auth", "/data/app") if mode == "factory" else ()


def boot():
    asyncio.new_event_loop()  # a power cut leaves no task behind
    flash.unmount()
    fl = flash.Flash(IMAGE, TABLE)
    flash.mount_data(fl, "/data", "vfs")
    th = Thermostat(None, "/data/app/settings.json")
    return fl, th, Privacy("/data", th)


def make_template():
    with open(TABLE, "w") as f:
        f.write("vfs, data, fat, 0x0, 0x%x\n" % SIZE)
    with open(IMAGE, "wb") as f:
        f.write(b"\xff" * SIZE)
    fl, th, priv = boot()
    store.makedirs("/data/app")
    store.makedirs("/data/auth")
    store.makedirs("/data/slots/a")
    store.save("/data/slots/a/app.json", {"code": "x" * 3000})  # survives everything
    priv.watch(th)
    priv.set_consents({"history": True, "telemetry": True})
    for i in range(10):  # many old versions of the schedule and the history
        th.update({"schedule": [{"at": "06:4%d" % i, "setpoint": 21.5}], "setpoint": 20 + i})
        store.save("/data/auth/password.json", {"hash": "owner-hash-%d" % i})
    priv.set_profile(NAME, setup=True)
    flash.unmount()
    fl.close()
    flash.copy_image(IMAGE, TEMPLATE)


def check(fl, th, priv, label):
    raw = bytearray(SIZE)
    fl.read(0, raw)
    left = [n for n in NEEDLES if n in raw]
    assert priv.pending() is None, label
    assert store.load("/data/slots/a/app.json") == {"code": "x" * 3000}, label
    if priv.profile().get("name") == NAME:  # cut before the deletion was recorded
        assert th.settings["schedule"] and priv.allowed("history"), label
        return False
    assert left == [], (label, left)
    assert th.settings["schedule"] == [] and priv.service_request()["id"], label
    assert not priv.allowed("history") and priv.history() == [], label
    want = 20.0 if mode == "factory" else 29.0  # the configuration is kept, or reset
    assert th.settings["setpoint"] == want, (label, th.settings)
    assert (store.load("/data/auth/password.json") is None) == (mode == "factory"), label
    return True


FILLS = []  # (first, last) flash op of each fill in the uncut run
_fill = erase.fill


async def _timed_fill(root):
    first = fl.ops
    n = await _fill(root)
    FILLS.append((first - start, fl.ops - start))
    return n
erase.fill = _timed_fill

make_template()
fl, th, priv = boot()
start = fl.ops
asyncio.run(priv.delete(WIPE))
total = fl.ops - start
erase.fill = _fill
assert check(fl, th, priv, "uncut") and len(FILLS) == 2
cuts = [n for n in range(1, total + 1)
        if n % 8 == 0 or not any(a + 2 < n < b - 2 for a, b in FILLS)]
done = 0
for n in cuts:
    flash.unmount()
    fl.close()
    flash.copy_image(TEMPLATE, IMAGE)
    fl, th, priv = boot()
    fl.cut_at(fl.ops + n)
    try:
        asyncio.run(priv.delete(WIPE))
        raise AssertionError("no cut at %d of %d" % (n, total))
    except PowerCut:
        pass
    fl, th, priv = boot()
    if priv.pending() is not None:
        asyncio.run(priv.resume())
    done += check(fl, th, priv, "cut at %d of %d" % (n, total))
assert done >= len(cuts) - 4, (done, cuts)  # only cuts before the marker leave the data
print("OK", total, len(cuts))
