# Device side of test_powerloss's findings (issue 21): each case is one of the faults an outside
# power-fail harness found, set up on a copy of a simulated device, and what must happen.
#   micropython powerloss_findings.py CASE CONFIG.json   -> prints OK
import json
import os
import sys

import bootstage
import flash
import servicejig
from flash import PowerCut

case = sys.argv[1]
cfg = json.loads(open(sys.argv[2]).read())
B = cfg["bundles"]
WORK = cfg["work"]


class Reset(Exception):
    pass


class NoHal:
    def reset(self):
        raise Reset()


def power_on(fl):
    flash.unmount()
    return bootstage.start(NoHal(), None, lambda m: None, servicejig.power_on(fl))


def install(b, name):
    with open(B[name], "rb") as f:
        return b.install_stream(f)


def update(fl, name):
    """Install, boot the trial, confirm, boot: returns the last Boot."""
    install(power_on(fl), name)
    b = power_on(fl)
    assert b.trial, (name, b.reasons)
    assert b.confirm()
    return power_on(fl)


def refused(b, name, verdict):
    from bundle import Reject
    try:
        install(b, name)
    except Reject as e:
        assert e.verdict == verdict, (name, e.verdict, str(e))
        return
    raise AssertionError(name + " was installed")


def fresh():
    flash.unmount()
    flash.copy_image(cfg["template"], WORK)
    return flash.Flash(WORK, seed=cfg.get("seed", 1))


def find_bytes(fl, part, needle, start=0):
    """Flash address of the first occurrence of `needle` in partition `part` from `start`."""
    p = fl.partition(part)
    buf = bytearray(4096)
    for blk in range(p.block_count):
        fl.read(p.offset + blk * 4096, buf)
        i = bytes(buf).find(needle)
        if i >= 0 and p.offset + blk * 4096 + i >= start:
            return p.offset + blk * 4096 + i
    return -1


def region(slot):
    """The ROMFS region that holds `slot` (by the state record's swap count), as mounted."""
    import slotstate
    st = slotstate.load(slotstate.path("/data"))
    r = flash.mounted_regions()
    return r.primary if slotstate.primary(st) == slot else r.secondary


def slot_has_prefix(slot):
    head = bytearray(4)
    region(slot).readblocks(0, head)
    return head == b"IOTB"


def tamper(fl, slot, name, bit=0):
    """Flip one bit in file `name` of the slot's ROMFS image (at rest: the device is off)."""
    p = region(slot)
    start = find_bytes(fl, p.name, b"IOTB")
    at = find_bytes(fl, p.name, name.rsplit("/", 1)[-1].encode(), start)
    assert at >= 0, name
    fl.flip(at + len(name.rsplit("/", 1)[-1]) + 8, bit)


def settle_ok(fl, allowed):
    """Power on until no trial is open (confirming trials); every boot must decide."""
    for _ in range(6):
        b = power_on(fl)
        assert b.slot is not None, b.reasons
        assert b.version in allowed, (b.version, allowed)
        if not b.trial:
            return b
        b.confirm()
    raise AssertionError("boot loop")


# 1. A program torn so that its second half reached the cells and its first half did not, at
#    the state-record commits of the trial boot and the confirm, and during the install: the
#    device boots, and the next update still installs.
if case == "torn_suffix":
    fl = fresh()
    b = power_on(fl)
    start = fl.ops
    install(b, "v2")
    after_install = fl.ops
    b = power_on(fl)
    b.confirm()
    total = fl.ops
    fl.close()
    hit = 0
    for n in list(range(after_install + 1, total + 1)) + list(range(start + 1, after_install, 23)):
        fl = fresh()
        fl.cut_at(n, "suffix")
        try:
            install(power_on(fl), "v2")
            b = power_on(fl)
            b.confirm()
            raise AssertionError("no cut at %d" % n)
        except PowerCut:
            pass
        hit += fl.torn == ("program", "suffix")
        fl.close()
        fl = flash.Flash(WORK)
        settle_ok(fl, ("1.0.0", "2.0.0"))
        b = update(fl, "v3")  # the device can still be updated
        assert b.version == "3.0.0" and not b.trial, (n, b.version, b.reasons)
        fl.close()
    assert hit > 10, hit

# 1b. A state-record save that raises (here: /data refuses writes) while a trial is pending:
#    the boot stage still decides. The trial is not run (its count could not be kept), the
#    active slot boots, every time.
elif case == "save_fails":
    import vfs
    fl = fresh()
    install(power_on(fl), "v2")
    for _ in range(3):
        flash.unmount()
        flash.mount_factory(fl)
        fs = flash.mount_data(fl)
        vfs.umount("/data")
        vfs.mount(fs, "/data", readonly=True)
        b = bootstage.start(NoHal(), servicejig.sim_config(), lambda m: None)
        assert (b.slot, b.version, b.trial) == ("a", "1.0.0", False), (b.version, b.reasons)
        assert any("state record cannot be written" in r for r in b.reasons), b.reasons
    b = power_on(fl)  # writable again: the trial runs
    assert b.trial and b.version == "2.0.0", b.reasons

# 2. Erases on an aged filesystem hit used blocks: torn there in every erase shape, the device
#    boots a verified slot and takes the next update.
elif case == "aged_erase":
    fl = fresh()
    for name in ("v2", "v3"):
        update(fl, name)
    power_on(fl)
    buf = bytearray(4096)
    f = open("/data/.fill", "wb")
    try:
        while True:
            f.write(buf)
    except OSError:
        pass
    f.close()
    os.remove("/data/.fill")
    flash.unmount()
    fl.close()
    aged = WORK + ".aged"
    flash.copy_image(WORK, aged)
    fl = flash.Flash(WORK)  # the count runs on a copy: every cut below starts from `aged`
    b = power_on(fl)
    erases = []  # the op numbers of erases of used sectors
    orig = fl.erase

    def spy(addr):
        used = fl.used_erases
        orig(addr)
        if fl.used_erases > used:
            erases.append(fl.ops)
    fl.erase = spy
    install(b, "v4")
    b = power_on(fl)
    b.confirm()
    fl.close()
    assert len(erases) >= 10, erases  # an aged filesystem erases used blocks
    for i, n in enumerate(erases[::max(1, len(erases) // 6)]):
        for shape in ("half", "residual", "late"):
            flash.copy_image(aged, WORK)
            fl = flash.Flash(WORK, seed=n * 3 + i)
            fl.cut_at(n, shape)
            try:
                install(power_on(fl), "v4")
                power_on(fl).confirm()
                raise AssertionError("no cut")
            except PowerCut:
                pass
            assert fl.torn == ("erase", shape), (n, fl.torn)
            fl.close()
            fl = flash.Flash(WORK)
            settle_ok(fl, ("3.0.0", "4.0.0"))
            b = update(fl, "v5")
            assert b.version == "5.0.0", b.version
            fl.close()

# 3. One bit flipped at rest: in the owner's password record, in the settings, in the factory
#    partition, in the filesystem's metadata. No silent label password, no lost setpoint
#    without a notice, and the boot stage decides (alert-only) instead of crashing.
elif case == "bit_flips":
    import credentials
    import store
    from thermostat import Thermostat
    label, owner = cfg["label"], "owner-pass-7731"
    fl = fresh()
    power_on(fl)
    for d in ("/app", "/auth", "/app.1", "/auth.1"):  # as the app's first start does
        store.makedirs("/data" + d)
    c = credentials.Credentials("/factory/password.json", "/data/auth/password.json")
    c.change(label, owner, 1000)
    Thermostat(None, "/data/app/settings.json").update({"setpoint": 23.5})
    from privacy import Privacy
    Privacy("/data").set_consents({"telemetry": True})
    flash.unmount()
    fl.close()
    base = WORK + ".owner"
    flash.copy_image(WORK, base)
    # In every copy of each owner record, one bit at a time.
    for needle in (b'"pbkdf2-sha256"', b'"setpoint": 23.5', b'"telemetry": {"granted": true'):
        fl = flash.Flash(base)
        addrs = []
        a = find_bytes(fl, "vfs", needle)
        while a >= 0:
            addrs.append(a)
            a = find_bytes(fl, "vfs", needle, a + 1)
        fl.close()
        assert addrs, needle
        for a in addrs:
            flash.copy_image(base, WORK)
            fl = flash.Flash(WORK)
            fl.flip(a + 3, 1)
            b = power_on(fl)
            assert b.slot == "a", b.reasons
            c = credentials.Credentials("/factory/password.json", "/data/auth/password.json")
            try:
                assert not c.verify(label), "label password back in force"
                assert c.verify(owner)
            except credentials.CredentialError as e:
                assert e.code == "RECORD_LOST", e.code  # refused, and said so
            th = Thermostat(None, "/data/app/settings.json")
            assert th.settings["setpoint"] == 23.5 or th.notice, th.settings
            assert Privacy("/data").allowed("telemetry"), needle  # the other copy holds
            fl.close()
    # Both copies garbled: the login says so, the label password does not come back.
    flash.copy_image(base, WORK)
    fl = flash.Flash(WORK)
    power_on(fl)
    for p in store.records.paths("/data/auth/password.json"):
        with open(p, "w") as f:
            f.write("garbled")
    c = credentials.Credentials("/factory/password.json", "/data/auth/password.json")
    try:
        c.verify(label)
        raise AssertionError("a lost owner record let a password be checked")
    except credentials.CredentialError as e:
        assert e.code == "RECORD_LOST"
    flash.unmount()
    fl.close()
    # The factory partition: a flipped bit in its trust anchors or in littlefs's metadata.
    for needle in (b'"roots"', b'"key_floor"', b"littlefs"):
        flash.copy_image(base, WORK)
        fl = flash.Flash(WORK)
        a = find_bytes(fl, "fctry", needle)
        assert a >= 0, needle
        fl.flip(a + 1, 2)
        b = power_on(fl)  # decides: never a crash before the boot stage
        assert b.slot is not None or b.reasons, b.reasons
        fl.close()
    # The data filesystem's superblocks both damaged: not mountable; alert-only with the reason.
    flash.copy_image(base, WORK)
    fl = flash.Flash(WORK)
    vfs0 = fl.partition("vfs").offset
    for blk in (0, 1):
        a = find_bytes(fl, "vfs", b"littlefs", vfs0 + blk * 4096)
        fl.flip(a, 0)
    b = power_on(fl)
    assert b.slot is None and any("data filesystem cannot be mounted" in r for r in b.reasons), \
        b.reasons
    fl.close()

# 4. The state record garbled or gone after 3.0.0 (security version 3) was confirmed: the floors
#    stay (2.0.0 and a revoked key's bundle are refused); the device runs 3.0.0, not 1.0.0.
elif case == "state_lost":
    for how in ("one_byte", "both_garbled", "gone"):
        fl = fresh()
        update(fl, "v2_key2")  # signed by the rotated key 2: key floor 2
        b = update(fl, "v3_key2")
        assert (b.version, b.state()["sec_floor"], b.state()["key_floor"]) == ("3.0.0", 3, 2)
        paths = ["/data/slots/state.json", "/data/slots.1/state.json"]
        if how == "one_byte":
            with open(paths[0], "r+b") as f:
                f.seek(5)
                f.write(b"#")
        else:
            for p in paths:
                if how == "gone":
                    os.remove(p)
                else:
                    with open(p, "w") as f:
                        f.write("{garbled")
        b = power_on(fl)
        st = b.state()
        assert (b.version, st["sec_floor"], st["key_floor"]) == ("3.0.0", 3, 2), (how, b.version,
                                                                                  st)
        refused(b, "v2b_key2", "DOWNGRADE")  # security version 2 < 3
        refused(b, "v4_key1", "KEY_REVOKED")  # key 1 was revoked by the rotation
        b = power_on(fl)
        assert b.version == "3.0.0", (how, b.version)
        fl.close()

# 5a. A release that crashes on every boot (never confirms) is rolled back after the trials.
elif case == "crash_loop":
    fl = fresh()
    install(power_on(fl), "v2")
    for i in range(3):
        b = power_on(fl)  # the trial runs, then crashes: no confirm, no rollback call
        assert b.trial and b.version == "2.0.0", (i, b.reasons)
    b = power_on(fl)
    assert (b.version, b.trial) == ("1.0.0", False), b.version
    assert "did not confirm itself" in b.state()["last"]
    b = power_on(fl)
    assert b.version == "1.0.0" and not b.trial
    # The failed slot was invalidated: a later fallback can never boot it.
    assert not slot_has_prefix("b")

# 5b. After a rotated key's bundle is confirmed, a bundle from the old key is refused.
elif case == "key_floor":
    fl = fresh()
    b = update(fl, "v2_key2")
    assert b.state()["key_floor"] == 2, b.state()
    refused(b, "v4_key1", "KEY_REVOKED")

# 5b'. A damaged release never falls back to an older one below the security floor: with
#     nothing valid left, alert-only.
elif case == "fallback_floor":
    fl = fresh()
    update(fl, "v2")
    b = update(fl, "v3")
    assert (b.slot, b.version) == ("a", "3.0.0"), (b.slot, b.version)
    tamper(fl, "a", cfg["data_files"][0])
    b = power_on(fl)
    assert b.slot is None and any("BAD_FILE_HASH" in r for r in b.reasons), b.reasons
    assert any("DOWNGRADE" in r for r in b.reasons), b.reasons  # 2.0.0 in slot b: below 3

# 5c. Every file kind in a slot is covered by the boot-time hash: a changed data file (the
#     password blocklist, a static page asset) makes the slot refused.
elif case == "all_files_hashed":
    for name in cfg["data_files"]:
        fl = fresh()
        b = power_on(fl)
        assert b.slot == "a"
        tamper(fl, "a", name)
        b = power_on(fl)
        assert b.slot is None and any("BAD_FILE_HASH" in r for r in b.reasons), (name, b.reasons)
        fl.close()
    # A pending slot is verified before its trial runs: a changed file rolls it back.
    fl = fresh()
    install(power_on(fl), "v2")
    tamper(fl, "b", cfg["data_files"][0])
    b = power_on(fl)
    assert (b.version, b.trial) == ("1.0.0", False), (b.version, b.reasons)
    assert "failed verification" in b.state()["last"] and not slot_has_prefix("b")

# The two copies of a record (bootloader/records.py): both written, the newest valid one wins,
# a garbled copy is never used, and a record with no valid copy is reported as lost.
elif case == "records":
    import records
    fl = fresh()
    power_on(fl)
    p = "/data/t/rec.json"
    a, b2 = records.paths(p)
    assert records.load(p) == (None, -1, records.MISSING)
    assert records.save(p, {"n": 1}) == 0 and records.save(p, {"n": 2}) == 1
    assert records.load(p) == ({"n": 2}, 1, records.OK)
    assert open(a).read() == open(b2).read()  # both copies written
    # A cut between the two writes: one copy newer; the newer one wins, whichever it is.
    old = open(a).read()
    records.save(p, {"n": 3})
    for newer, older in ((a, b2), (b2, a)):
        new = open(newer).read()
        with open(older, "w") as f:
            f.write(old)
        assert records.load(p) == ({"n": 3}, 2, records.OK), newer
        with open(older, "w") as f:
            f.write(new)
    # One byte changed in the newest copy: the CRC refuses it, the other copy is used.
    for bad in (a, b2):
        text = bytearray(open(bad, "rb").read())
        text[text.find(b"3")] = ord("7")
        good = open(bad, "rb").read()
        with open(bad, "wb") as f:
            f.write(text)
        assert records.load(p) == ({"n": 3}, 2, records.REPAIRED), bad
        with open(bad, "wb") as f:
            f.write(good)
    for q in (a, b2):
        with open(q, "w") as f:
            f.write("[9, {\"n\": 9}]\n00000000\n")
    assert records.load(p) == (None, -1, records.LOST)
    assert records.remove(p) and records.load(p)[2] == records.MISSING
else:
    raise SystemExit("unknown case " + case)
print("OK")
