# The power-cut and bit-rot sweep of the simulated board (mcuboot's perm_with_fails, with the
# tear shapes of tests/device/nor_powercut.py). For each job (young or aged filesystem; an
# update with its confirm, or with its rollback) the scenario is run once to count its flash
# operations; then for every operation n (every `stride`-th) and every tear shape: restore
# the image, cut at n, power on again, optionally cut a second time during that recovery,
# then let the device settle (a trial is confirmed in `update`, failed in `rollback`) and
# install one more update, which must succeed. Bit flips at rest: one bit in every used
# block of the data and factory partitions, the slots' regions and the owner mark, device off,
# then power on.
# The oracle (DESIGN.md "Slots and state"): a verified approved version runs, or alert-only
# where nothing valid is left; never a crash or a boot loop; the floors never go down; an owner
# record is never lost without a notice (no silent label password); still updatable.
#   micropython powercut_sweep.py CONFIG.json   -> one JSON line
import json
import sys

import bootstage
import flash
import servicejig
from flash import PowerCut

cfg = json.loads(open(sys.argv[1]).read())
B = cfg["bundles"]  # version -> bundle path
WORK = cfg["work"]
OWNER = cfg.get("owner")  # {"label": pw, "owner": pw, "setpoint": x}
MAX_BOOTS = 6
bad = []
outcomes = {}
stats = {"states": 0, "second_cuts": 0, "used_erases": 0, "flips": 0, "overprograms": 0,
         "shapes": {}}


class Reset(Exception):
    pass


class NoHal:
    def reset(self):
        raise Reset()


def _quiet(msg):
    pass


def power_on(fl):
    """One power-on of the board over `fl`: mount, decide (unixboard's sequence)."""
    flash.unmount()
    return bootstage.start(NoHal(), None, _quiet, servicejig.power_on(fl))


def install(b, version):
    with open(B[version], "rb") as f:
        b.install_stream(f)


def cycle(fl, version, kind):
    """One update of the running device to `version`: install, trial, confirm or roll back."""
    b = power_on(fl)
    install(b, version)
    b = power_on(fl)
    if not b.trial:
        raise AssertionError("%s did not boot as a trial" % version)
    if kind == "update":
        b.confirm()
    else:
        try:
            b.rollback("self-test failed (sweep)")
        except Reset:
            pass
    b = power_on(fl)
    flash.unmount()
    return b


def floors(b):
    st = b.state()
    return st["sec_floor"], st["key_floor"]


def settle(path, kind, seed, allowed, floor, second=None):
    """Power on after a cut (optionally cutting again at op `second` of the recovery), until
    the device runs without a trial. Returns (outcome, Flash) or raises Bad."""
    fl = flash.Flash(path, seed=seed)
    if second:
        fl.cut_at(second, seed % 3)
        try:
            b = power_on(fl)
            if b.trial:
                _finish_trial(b, kind)
            power_on(fl)
        except PowerCut:
            stats["second_cuts"] += 1
        except Reset:
            pass
        if not fl.dead:
            stats["second_missed"] = stats.get("second_missed", 0) + 1
        flash.unmount()
        fl.close()
        fl = flash.Flash(path, seed=seed)
    seen = []
    for _ in range(MAX_BOOTS):
        b = power_on(fl)
        if b.slot is None:
            raise Bad("alert-only with a valid slot left: " + "; ".join(b.reasons))
        if b.version not in allowed:
            raise Bad("runs %s, not one of %s" % (b.version, allowed))
        if floors(b) < floor or floors(b)[1] < floor[1]:
            raise Bad("floors went down: %s -> %s" % (floor, floors(b)))
        seen.append(b.version + (" trial" if b.trial else ""))
        if not b.trial:
            return seen[0], fl
        _finish_trial(b, kind)
    raise Bad("boot loop: " + ", ".join(seen))


def _finish_trial(b, kind):
    if kind == "update":
        b.confirm()
    else:
        try:
            b.rollback("self-test failed (sweep)")
        except Reset:
            pass


class Bad(Exception):
    pass


def updatable(fl, last):
    """One more update after the recovery must install, boot as a trial and confirm."""
    b = power_on(fl)
    install(b, last)
    b = power_on(fl)
    if not (b.trial and b.version == last):
        raise Bad("the update after recovery did not boot as a trial (%s)" % b.version)
    b.confirm()
    b = power_on(fl)
    if b.version != last or b.trial:
        raise Bad("the update after recovery did not stay (%s)" % b.version)


def record(label, fn):
    stats["states"] += 1
    try:
        out = fn()
    except Bad as e:
        out = None
        bad.append("%s: %s" % (label, e))
    except Exception as e:  # the oracle: any crash of the device code is a finding
        out = None
        bad.append("%s: CRASH %r" % (label, e))
    finally:
        flash.unmount()
    if out:
        outcomes[out] = outcomes.get(out, 0) + 1


def sweep(job, base, old, new):
    kind = job["kind"]
    flash.copy_image(base, WORK)
    fl = flash.Flash(WORK)
    b = power_on(fl)
    floor = floors(b)
    flash.unmount()
    cycle(fl, new, kind)
    total = fl.ops
    stats["overprograms"] += fl.overprograms  # an uncut run: none from our own writers
    stats["uncut_used_erases"] = stats.get("uncut_used_erases", 0) + fl.used_erases
    fl.close()
    allowed = (old, new)
    stride, phase = cfg.get("stride", 1), cfg.get("phase", 0)
    for n in range(1, total + 1):
        for shape in cfg["shapes"]:
            tail = n > total - cfg.get("tail", 0)  # the trial and confirm: denser
            if (n + shape + phase) % (cfg.get("tail_stride", 1) if tail else stride):
                continue
            seed = cfg.get("seed", 1) * 100003 + n * 7 + shape
            label = "%s/%s cut %d/%d shape %d" % (job["age"], kind, n, total, shape)

            def one():
                flash.copy_image(base, WORK)
                fl = flash.Flash(WORK, seed=seed)
                fl.cut_at(n, shape)
                try:
                    cycle(fl, new, kind)
                    raise Bad("the scenario finished without the power cut")
                except PowerCut:
                    pass
                torn = fl.torn
                stats["used_erases"] += fl.used_erases
                key = "%s/%s" % torn
                stats["shapes"][key] = stats["shapes"].get(key, 0) + 1
                flash.unmount()
                fl.close()
                second = 1 + seed % 9 if cfg.get("second") else None
                out, fl = settle(WORK, kind, seed, allowed, floor, second)
                if cfg.get("final"):
                    updatable(fl, cfg["last"])
                fl.close()
                return out
            record(label, one)
    return total


# --- bit flips at rest ------------------------------------------------------------------

def used_blocks(fl, part):
    p = fl.partition(part)
    buf = bytearray(4096)
    out = []
    for blk in range(p.block_count):
        fl.read(p.offset + blk * 4096, buf)
        if buf != b"\xff" * 4096:
            nz = [i for i in range(0, 4096, 64) if buf[i:i + 64] != b"\xff" * 64]
            out.append((p.offset + blk * 4096, nz))
    return out


def owner_credentials(fl):
    """The app's Credentials over `fl`, with the owner mark of its `marks` region."""
    import credentials
    from marks import Marks
    return credentials.Credentials("/factory/password.json", "/data/auth/password.json",
                                   marks=Marks(fl.partition("marks")))


def owner_check(label, fl):
    """An owner record that cannot be read is never replaced by a default in silence."""
    if not OWNER:
        return
    import credentials
    from thermostat import Thermostat
    c = owner_credentials(fl)
    try:
        if c.verify(OWNER["label"]):
            raise Bad("the label password works again, silently")
    except credentials.CredentialError as e:
        if e.code not in ("RECORD_LOST", "BAD_RECORD"):
            raise
    th = Thermostat(None, "/data/app/settings.json")
    if th.settings["setpoint"] != OWNER["setpoint"] and not th.notice:
        raise Bad("the owner's setpoint is lost without a notice")


# What may leave nothing valid to run: the factory record or trust anchors, the data
# filesystem, or the slot that runs (the other one is below the floor after the updates).
_DAMAGE = ("cannot be mounted", "unreadable", "BAD_",
           "UNKNOWN_ROOT", "EMPTY_SLOT", "EXTRA_", "TRUNCATED")


def _damage(reasons):
    for r in reasons:
        for d in _DAMAGE:
            if d in r:
                return d
    return None


def flips(base, floor, allowed, per_block):
    fl = flash.Flash(base)
    blocks = [("data", a, nz) for a, nz in used_blocks(fl, "vfs")] + \
        [("factory", a, nz) for a, nz in used_blocks(fl, "fctry")]
    # the app slots' images, the swap log, and the owner mark (bootloader/marks.py)
    for part in ("romfs", "romfs_b", "romfs_s", "marks"):
        blocks += [(part, a, nz) for a, nz in used_blocks(fl, part)]
    fl.close()
    results = {"alert-only": 0}
    every = cfg.get("flip_stride", 1)
    for i, (region, addr, nz) in enumerate(blocks):
        if (i + cfg.get("phase", 0)) % every:
            continue
        for k in range(per_block):
            seed = addr // 4096 * 31 + k
            off = nz[seed % len(nz)] + (seed * 7) % 64
            bit = seed % 8
            label = "flip %s 0x%x bit %d" % (region, addr + off, bit)
            if cfg.get("flip_only") and label not in cfg["flip_only"]:
                continue  # a targeted run: only the flips named (e.g. a finding's)

            def one():
                flash.copy_image(base, WORK)
                fl = flash.Flash(WORK, seed=seed)
                fl.flip(addr + off, bit)
                stats["flips"] += 1
                for _ in range(MAX_BOOTS):
                    b = power_on(fl)
                    if b.slot is None:
                        # Alert-only is right only where nothing valid is left: the factory
                        # record, the filesystem or both slots damaged (reasons say which).
                        why = _damage(b.reasons)
                        if not why:
                            raise Bad("alert-only, but nothing valid was damaged: %s"
                                      % "; ".join(b.reasons))
                        al = stats.setdefault("alert_only", {})
                        al[why] = al.get(why, 0) + 1
                        results["alert-only"] += 1
                        fl.close()
                        return "alert-only"
                    if b.version not in allowed:
                        raise Bad("runs %s, not one of %s" % (b.version, allowed))
                    if floors(b) < floor or floors(b)[1] < floor[1]:
                        raise Bad("floors went down: %s -> %s" % (floor, floors(b)))
                    if not b.trial:
                        break
                    b.confirm()
                else:
                    raise Bad("boot loop")
                owner_check(label, fl)
                if cfg.get("final"):
                    updatable(fl, cfg["last"])
                fl.close()
                return "flip " + b.version
            before = len(bad)
            record(label, one)
            if len(bad) > before:
                stats["biterr_bad"] = stats.get("biterr_bad", 0) + 1
    return len(blocks)


def prepare_aged(template, versions):
    """The filesystem after several confirmed updates, with the owner's password and setpoint
    set through the app's own code (the bit-flip base); and the same after the free space has
    held data once (a filler file written to full, then removed, as "delete my data" does),
    so that every block the next update allocates is a used block its erase must clear."""
    aged, worn = WORK + ".aged", WORK + ".worn"
    flash.copy_image(template, aged)
    fl = flash.Flash(aged)
    power_on(fl)
    import store
    for d in ("/app", "/auth", "/app.1", "/auth.1"):  # as the app's first start does
        store.makedirs("/data" + d)
    flash.unmount()
    for v in versions:
        cycle(fl, v, "update")
    if OWNER:
        from thermostat import Thermostat
        power_on(fl)
        c = owner_credentials(fl)
        c.change(OWNER["label"], OWNER["owner"], 1000)
        Thermostat(None, "/data/app/settings.json").update({"setpoint": OWNER["setpoint"]})
        flash.unmount()
    fl.close()
    flash.copy_image(aged, worn)
    fl = flash.Flash(worn)
    power_on(fl)
    buf = bytearray(4096)
    f = open("/data/.fill", "wb")
    try:
        while True:
            f.write(buf)
    except OSError:  # ENOSPC: every free block has been written
        pass
    f.close()
    import os
    os.remove("/data/.fill")
    flash.unmount()
    fl.close()
    return aged, worn


def main():
    ages = {"young": (cfg["template"], cfg["young"][0], cfg["young"][1])}
    jobs = cfg["jobs"]
    if any(j["age"] == "aged" for j in jobs) or cfg.get("flips") or cfg.get("prepare"):
        aged, worn = cfg.get("aged_images") or prepare_aged(cfg["template"], cfg["aged"][0])
        if cfg.get("prepare"):
            return {"aged_images": [aged, worn]}
        ages["aged"] = (worn, cfg["aged"][0][-1], cfg["aged"][1])
        ages["flips"] = (aged, cfg["aged"][0][-1], cfg["aged"][1])
    totals = {}
    for job in jobs:
        base, old, new = ages[job["age"]]
        totals["%s/%s" % (job["age"], job["kind"])] = sweep(job, base, old, new)
    blocks = 0
    if cfg.get("flips"):
        base, old, _new = ages["flips"]
        fl = flash.Flash(base)
        floor = floors(power_on(fl))
        flash.unmount()
        fl.close()
        blocks = flips(base, floor, (old,), cfg["flips"])
    stats.setdefault("biterr_bad", 0)
    out = {"ops": totals, "flip_blocks": blocks, "outcomes": outcomes,
           "bad_count": len(bad), "bad": bad[:40]}
    out.update(stats)
    return out


print(json.dumps(main()))
