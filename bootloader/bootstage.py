# The boot stage: choose a slot, verify all of it, then run it; roll back, fall back, or alert.
import json
import sys

import romslots
import slots
import slotstate
import verdicts
from bundle import ALG_ED25519, ALG_P256, MAX_PREFIX, Reject

_ALGS = {"ed25519": ALG_ED25519, "ecdsa-p256": ALG_P256}
BUF_SIZE = 4096  # one flash sector: the swap of ROMFS slots moves sectors through it
APP_MOUNT = "/rom"
GC_MIN = 2048


def load_anchors(path):
    """Pinned root keys and the factory key floor from the factory partition (read-only)."""
    with open(path) as f:
        doc = json.loads(f.read())
    roots = []
    try:
        for r in doc["roots"]:
            roots.append((_ALGS[r["alg"]], bytes.fromhex(r["key"])))
        floor = int(doc.get("key_floor", 1))
    except (TypeError, AttributeError, IndexError):
        # Not the shape written at the factory (fuzzed: test_byte_fuzz): the caller's
        # "unreadable" path, alert-only mode, rather than a crash of the boot stage.
        raise ValueError("trust anchors are not {roots: [{alg, key}], key_floor}")
    if not roots:
        raise ValueError("no root keys")
    return roots, floor


class Boot:
    """What the boot stage hands to the application: the verified slot and its state."""

    def __init__(self, hal, profile, anchors, key_floor, buf, log, space=None):
        self.hal = hal
        # The boot profile: what this device is and where its parts are: board, product,
        # chip, slot capacity, root (the data filesystem), anchors and factory (paths), and
        # the ROMFS regions (romslots.Regions) on a board that has them.
        self.profile = profile
        self.root = profile["root"]
        self.state_path = slotstate.path(profile["root"])
        self.anchors = anchors
        self.factory_key_floor = key_floor
        self.buf = buf
        self._space = space  # made on first use when not given (see buffers())
        self._inst = None
        self.log = log
        self.slot = None
        self.verified = None
        self.trial = False
        self.reasons = []
        self._recovered = None  # the state rebuilt by recover() when it could not be saved
        # ROMFS slots (romslots.py) when the board has the regions: "a" is the primary region
        # (mapped, runs), "b" the secondary; else directories on the data filesystem.
        self.regions = profile.get("regions")
        self._image = None  # (offset, size) of the verified image in the primary region

    def state(self):
        st = slotstate.load(self.state_path, self.factory_key_floor)
        if st.get("lost") and self._recovered is not None:
            return dict(self._recovered)
        return st

    def _save(self, st):
        """Persist the record; False (logged, in reasons) if the data filesystem refuses."""
        try:
            slotstate.save(self.state_path, st)
            return True
        except OSError as e:
            why = "state record cannot be written (%r)" % (e,)
            self.reasons.append(why)
            self.log("boot: " + why)
            return False

    def recover(self, st):
        """No copy of the state record is readable: run the highest version that verifies
        (checked against the factory floors) and take its security version and key serial
        as the floors, never the defaults. With no slot verifying, nothing is decided here
        (alert-only follows). Returns the record to boot from."""
        best = None
        for slot in slotstate.SLOTS:
            try:
                v = self._verify(slot, st)
            except Reject:
                continue
            if best is None or _rank(v) > _rank(best[1]):
                best = (slot, v)
        if best is None:
            return st
        slot, v = best
        st.pop("lost", None)
        st["active"], st["pending"], st["trials"] = slot, None, 0
        st["sec_floor"] = v.manifest["security_version"]
        st["key_floor"] = max(st["key_floor"], v.cert.serial)
        self.recover_firmware(st)
        st["last"] = "state record unreadable: floors taken from %s in slot %s" % (
            v.manifest["version"], slot)
        self.log("boot: " + st["last"])
        self._recovered = dict(st)
        self._save(st)
        return st

    def recover_firmware(self, st):
        """Boards with a firmware image put its floor back into a recovered record."""

    @property
    def capacity(self):
        """The largest app payload a slot takes (the ROMFS image, or the files of a directory)."""
        return romslots.capacity(self.regions) if self.regions else self.profile["capacity"]

    def policy(self, st=None, now=0):
        st = st or self.state()
        p = self.profile
        return {"kind": "app", "product": p["product"], "board": p["board"],
                "sec_floor": st["sec_floor"], "key_floor": st["key_floor"],
                "capacity": self.capacity, "now": now}

    def _verify(self, slot, st, legacy=False):
        if self.regions and not legacy:
            here = slotstate.primary(st) == slot
            part = self.regions.primary if here else self.regions.secondary
            v = romslots.verify(part, self.anchors, self.policy(st), self.buf, self.space(),
                                self.regions.window if here else None, slot)
            if here:
                self._image = (romslots.image_offset(len(v.prefix)), v.header.payload_len)
        else:
            v = slots.verify_slot(self.root, slot, self.anchors, self.policy(st), self.buf)
        v.compact()
        return v

    def choose(self):
        """Pick and verify the slot to run. Returns True, or False for alert-only mode.
        Always decides: a state record that cannot be written costs the trial (a trial whose
        count is not kept could crash forever), never the boot. With ROMFS regions the slot
        that runs must first be in the primary region (the only one a board maps): _bring
        verifies a slot in the secondary there, swaps the regions (romslots.Swap) and verifies
        it again where it runs; the other slot's image stays in the secondary for a rollback."""
        st = self.state()
        self._settle(st)
        bring = self._bring if self.regions else self._verify
        if st.get("lost"):
            st = self.recover(st)
        pending = st["pending"]
        if pending:
            if st["trials"] > 0:
                st["trials"] -= 1  # persisted before the trial runs: a crash still counts
                if self._save(st):
                    try:
                        self.verified = bring(pending, st)
                        self.slot, self.trial = pending, True
                        self.log("boot: trial of slot %s (%s), %d boots left to confirm"
                                 % (pending, self.version, st["trials"]))
                        return True
                    except Reject as e:
                        self._rollback(st, "slot %s failed verification before its trial: %s"
                                       % (pending, e))
                else:
                    self.log("boot: trial of slot %s not run: its boot count cannot be kept"
                             % pending)
            elif st["last"].startswith("self-test"):
                self._rollback(st, st["last"])  # the app asked for it (rollback())
            else:
                self._rollback(st, "slot %s did not confirm itself within %d boots"
                               % (pending, slotstate.TRIALS))
        active = st["active"]
        for slot in (active, slotstate.other(active)):
            if slot == st["pending"]:
                continue  # its trial is not run (above)
            try:
                self.verified = bring(slot, st)
            except Reject as e:
                self.reasons.append("%s: %s" % (slot, e))
                self.log("boot: slot %s refused: %s" % (slot, e))
                continue
            self.slot = slot
            if slot != active:
                st["active"] = slot
                st["last"] = "slot %s refused (%s); fell back to slot %s" % (
                    active, self.reasons[-1], slot)
                self._save(st)
            self.log("boot: slot %s verified (%s)" % (slot, self.version))
            self._drop_legacy()
            return True
        return self._legacy(st)

    def _bring(self, slot, st):
        """Verify `slot`; if it is in the secondary region, swap it into the primary and
        verify it there. Returns the Verified of the image in the primary."""
        if slotstate.primary(st) != slot:
            self._verify(slot, st)  # nothing is swapped in that does not verify
            self._swap(st)
        return self._verify(slot, st)

    def _legacy(self, st):
        """A device that migrated from directory slots: a directory slot still runs when no
        ROMFS image verifies (until a ROMFS image confirms itself; then they are removed).
        False without ROMFS regions: directory slots are then the slots choose() tried."""
        if not self.regions:
            return False
        for slot in (st["active"], slotstate.other(st["active"])):
            if slot == st["pending"] or not slots.exists(slots.prefix_path(self.root, slot)):
                continue
            try:
                self.verified = self._verify(slot, st, legacy=True)
            except Reject as e:
                self.reasons.append("directory %s: %s" % (slot, e))
                continue
            self.slot, self._image = slot, None
            if st["active"] != slot:
                st["active"] = slot
                self._save(st)
            if slotstate.primary(st) == slotstate.other(slot):
                self._swap(st)  # neither region verifies: an update must go to the secondary
            self.log("boot: directory slot %s verified (%s)" % (slot, self.version))
            return True
        return False

    def _drop_legacy(self):
        # littlefs keeps only data once a ROMFS image runs confirmed: directory slots go.
        if not self.regions or self.trial:
            return
        for slot in slotstate.SLOTS:
            if slots.exists(slots.prefix_path(self.root, slot)):
                slots.invalidate(self.root, slot)
            if slots.exists(slots.slot_dir(self.root, slot)):
                slots.rmtree(slots.slot_dir(self.root, slot))

    def _swap(self, st):
        """Exchange the regions (romslots.Swap: logged, resumable), then account for it."""
        gen = st["swaps"] + 1
        romslots.Swap(self.regions, self.buf).start(gen)
        self._account(st, gen)

    def _account(self, st, gen):
        st["swaps"] = gen  # its parity: the other slot is in the primary now
        self._save(st)  # if it fails, the log still says so: the next boot accounts again

    def _settle(self, st):
        """Finish a swap a power cut interrupted, and account for one the record does not know
        of yet (the record is saved after the log says DONE). Nothing without ROMFS regions."""
        if not self.regions:
            return
        sw = romslots.Swap(self.regions, self.buf)
        first = sw.first()
        if first is None or first[0] != romslots.BEGIN:
            return
        gen = first[1]
        if st.get("lost"):
            sw.resume()  # the regions must be whole before recover() verifies them
            st["swaps"] = gen  # which slot is where: the parity of the log's count
            return
        if gen != (st["swaps"] + 1) & 0xFF:
            return  # accounted for already
        sw.resume()
        self.log("boot: finished and accounted swap %d" % gen)
        self._account(st, st["swaps"] + 1)

    def _rollback(self, st, reason):
        if self.regions:
            return self._rom_rollback(st, reason)
        failed = st["pending"]
        st["pending"] = None
        st["trials"] = 0
        st["last"] = "rolled back: " + reason
        if self._save(st):
            # The failed slot still carries a valid signature: remove its signed prefix so
            # that a later fallback can never boot a version that already failed its trial.
            slots.invalidate(self.root, failed)
        else:
            st["pending"] = failed  # still recorded: not a fallback candidate either
        self.log("boot: " + st["last"])

    def _rom_rollback(self, st, reason):
        failed = st["pending"]
        # The failed image loses its header first: a cut before the record repeats this.
        p = self.regions.primary if slotstate.primary(st) == failed else \
            self.regions.secondary
        romslots.invalidate(p)
        st["pending"] = None
        st["trials"] = 0
        st["last"] = "rolled back: " + reason
        self._save(st)
        self.log("boot: " + st["last"])

    @property
    def version(self):
        return self.verified.manifest["version"] if self.verified else None

    def confirm(self):
        """Called by the application once its self-test passed: the trial slot becomes active
        and the anti-rollback floors rise to this bundle's security version and key serial."""
        if not self.trial:
            return False
        st = self.state()
        if st["pending"] != self.slot:
            return False
        st["active"] = self.slot
        st["pending"] = None
        st["trials"] = 0
        st["sec_floor"] = max(st["sec_floor"], self.verified.manifest["security_version"])
        st["key_floor"] = max(st["key_floor"], self.verified.cert.serial)
        st["last"] = "confirmed %s in slot %s" % (self.version, self.slot)
        if not self._save(st):
            return False  # still a trial: the next boots count down and roll it back
        self.trial = False
        self.log("boot: " + st["last"])
        if self.regions:
            self._drop_legacy()
        return True

    def rollback(self, reason):
        """Called by the application when its self-test failed: give up the trial and restart."""
        st = self.state()
        if self.trial and st["pending"] == self.slot:
            why = "self-test of %s failed: %s" % (self.version, reason)
            if self.regions:  # it runs from the primary: the boot stage swaps it out at restart
                st["trials"] = 0
                st["last"] = why
                self._save(st)
                self.log("boot: %s; rolled back at the restart" % why)
            else:
                self._rollback(st, why)
        self.hal.reset()

    def installer(self, progress=None, now=0, resume=None, at=0, factory=False):
        """An installer for the inactive slot under the current rules: romslots.Installer
        into the secondary region, or slots.Installer into a directory (`resume`, `at`: keep
        what a download cut by a power loss wrote, see both)."""
        st = self.state()
        if self._inst is not None and not self._inst.closed:  # they would share the space
            raise Reject(verdicts.BUSY, "another update is being installed")
        if not self.regions:
            self._inst = slots.Installer(self.root, self.state_path, self.anchors,
                                         self.policy(st, now), progress, factory=factory,
                                         space=self.space(), resume=resume)
            return self._inst
        if st["pending"] and not factory:
            raise Reject(verdicts.BUSY, "slot %s is still on trial; confirm or roll back first"
                         % st["pending"])
        target = "a" if factory else slotstate.other(st["active"])
        if slotstate.primary(st) == target and not factory:  # a swap not yet settled by a boot
            raise Reject(verdicts.BUSY, "slot %s is in the primary region; restart first" % target)

        def publish(v):
            s = self.state()
            version = v.manifest["version"]
            if factory:
                new = slotstate.default(s["key_floor"])
                new["fw"] = s["fw"]
                new["sec_floor"] = v.manifest["security_version"]
                new["key_floor"] = max(s["key_floor"], v.cert.serial)
                new["last"] = "factory install of %s into slot a" % version
                s = new
            else:
                s["pending"], s["trials"] = target, slotstate.TRIALS
                s["last"] = "installed %s into slot %s" % (version, target)
            slotstate.save(self.state_path, s)

        part = self.regions.primary if factory else self.regions.secondary
        if factory:  # a fresh record counts swaps from 0: so does the log, blank again
            romslots.Swap(self.regions, self.buf).clear()
        self._inst = romslots.Installer(part, target, self.anchors, self.policy(st, now),
                                        publish, progress, self.space(), resume, at)
        return self._inst

    def space(self):
        """The buffer for an update's signed prefix: made at start (buffers()), so that an
        update never needs to find MAX_PREFIX contiguous bytes in a heap the app has broken
        up."""
        if self._space is None:
            self._space = bytearray(MAX_PREFIX)
        return self._space

    def install_stream(self, stream, progress=None, now=0, factory=False):
        return slots.pump(stream, self.buf, self.installer(progress, now, factory=factory))

    @property
    def app_dir(self):
        """Where the running application's files are: the mounted ROMFS image, or its
        directory slot."""
        if self._image is not None:
            return APP_MOUNT
        return slots.slot_dir(self.root, self.slot)

    def mount_app(self):
        """Mount the verified image from where the board maps it (vfs.VfsRom: its bytecode
        runs in place, not copied into the heap), or take its directory, as the import path."""
        if self._image is not None:
            import vfs
            off, n = self._image
            try:
                vfs.umount(APP_MOUNT)  # a restart without a reset (tests, the simulator)
            except OSError:
                pass
            vfs.mount(vfs.VfsRom(self.regions.window(off + n)[off:off + n]), APP_MOUNT)
        sys.path.insert(0, self.app_dir)

    def run_app(self):
        """Import the verified slot's application and hand it control."""
        self.mount_app()
        import app
        return app.main(self)


def _rank(v):
    # Which of two verified slots is newer: security version, then key serial, then version.
    ver = []
    for part in v.manifest["version"].split("."):
        try:
            ver.append(int(part))
        except ValueError:
            ver.append(0)
    return (v.manifest["security_version"], v.cert.serial, ver)


def buffers():
    """The two buffers that live as long as the device runs, made first, while the heap is in
    one piece: one for reading files, one for an update's signed prefix (Boot.space). From
    here on the collector also runs after every 1/32 of the free heap allocated, not only when
    an allocation fails: garbage is reused before it spreads, and a small heap stays in a few
    large pieces (the failures of a tight heap are fragmentation, not lack of bytes)."""
    buf = bytearray(BUF_SIZE)
    space = bytearray(MAX_PREFIX)
    import gc
    gc.threshold(max(GC_MIN, gc.mem_free() // 32))
    return buf, space


def start(hal, profile, log=print, mounted=None):
    """Boot: returns a Boot whose slot is verified, or whose `slot` is None (alert-only).
    `mounted`: (profile, problems) from a board's power-on; any problem (factory data or /data
    that cannot be mounted) means alert-only with the problems as reasons."""
    buf, space = buffers()
    if mounted is not None:
        profile, problems = mounted
        if problems:
            b = Boot(hal, profile, [], 1, buf, log, space)
            b.reasons.extend(problems)
            return b
    try:
        anchors, key_floor = load_anchors(profile["anchors"])
    except (OSError, ValueError, KeyError) as e:
        b = Boot(hal, profile, [], 1, buf, log, space)
        b.reasons.append("trust anchors unreadable: %r" % (e,))
        return b
    b = Boot(hal, profile, anchors, key_floor, buf, log, space)
    b.choose()
    return b
