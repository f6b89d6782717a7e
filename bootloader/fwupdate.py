# Firmware updates: the MicroPython image of a signed `firmware` bundle goes into the next OTA
# partition through esp32.Partition, is read back and verified, becomes the boot partition, and
# is confirmed only after the self-test. An image that restarts unconfirmed is rolled back by
# the ESP-IDF bootloader (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, on in MicroPython's builds).
#
# Records on the data filesystem: ROOT/fw/<label>.bnd, the signed prefix of the bundle an OTA
# partition was installed from (so the image can be verified again later); the firmware's
# trial state {pending, sec_floor, last, reason} is the "fw" part of the one boot state record
# (slotstate.py), which also holds the key floor both kinds share.
import binascii
import hashlib
import os
import struct

from micropython import const

import bundle
import files
import slots
import slotstate
import verdicts
from bundle import Reject

SECTOR = const(4096)
_NEW = const(0)
_PENDING_VERIFY = const(1)
_VALID = const(2)
_INVALID = const(3)
_ABORTED = const(4)
IMAGE_MAGIC = const(0xE9)
_APP_DESC_MAGIC = 0xABCD5432  # a long int on a 32-bit port: no const()
# The chip id in an app image's extended header (esptool's IMAGE_CHIP_ID).
CHIP_IDS = {"esp32": 0, "esp32s3": 9, "esp32c3": 5}


def otadata_state(part_cls):
    """(OTA slot index, ota_state) of the entry the bootloader follows, or (None, None)."""
    try:
        od = part_cls("otadata")
    except OSError:
        return None, None
    raw = bytearray(32)
    best = None
    for i in (0, 1):
        od.readblocks(i, raw)
        seq, _label, state, crc = struct.unpack("<I20sII", raw)
        if seq == 0xFFFFFFFF or state in (_INVALID, _ABORTED):
            continue
        if crc != binascii.crc32(raw[:4], 0xFFFFFFFF):
            continue
        if best is None or seq > best[0]:
            best = (seq, state)
    if best is None:
        return None, None
    apps = [p for p in part_cls.find(part_cls.TYPE_APP) if 0x10 <= p.info()[1] < 0x20]
    return (best[0] - 1) % len(apps), best[1]


class Firmware:
    """The firmware side of the boot stage. `part_cls` is esp32.Partition (or the unix fake),
    `profile` the boot profile (bootstage.Boot.profile: board, product, root, chip)."""

    def __init__(self, part_cls, profile, anchors, key_floor, log=print):
        self.Partition = part_cls
        self.profile = profile
        self.dir = profile["root"] + "/fw"
        self.slots_state = slotstate.path(profile["root"])
        self.anchors = anchors
        self.factory_key_floor = key_floor
        self.log = log
        self.running = part_cls(part_cls.RUNNING)
        self.label = self.running.info()[4]
        self.trial = False
        self.verified = None

    # --- records ---------------------------------------------------------------------

    def state(self):
        """The firmware part of the boot state record (defaults when the record is lost: the
        boot stage rebuilds it, see bootstage.Boot.recover)."""
        return slotstate.load(self.slots_state, self.factory_key_floor)["fw"]

    def _mkdir(self):
        try:
            os.mkdir(self.dir)
        except OSError:
            pass  # exists

    def _save(self, fst):
        st = slotstate.load(self.slots_state, self.factory_key_floor)
        if st.get("lost") == "unreadable":
            # Not written over a lost record with default floors: the boot stage rebuilds
            # the record first (Boot.recover), and a firmware trial the record cannot keep
            # is simply not confirmed (the bootloader rolls it back).
            raise OSError(5)
        st["fw"] = fst
        slotstate.save(self.slots_state, st)

    def _try_save(self, fst):
        try:
            self._save(fst)
        except OSError as e:
            self.log("firmware: state record cannot be written (%r)" % (e,))

    def running_floor(self, buf):
        """The security version of the running image if it verifies under the factory floors
        (0 otherwise): the firmware floor of a rebuilt state record."""
        try:
            v = self.verify_running(buf, 0)
        except Reject:
            return 0
        return v.manifest["security_version"]

    def record_path(self, label):
        return self.dir + "/" + label + ".bnd"

    def _forget(self, label):
        try:
            os.remove(self.record_path(label))
        except OSError:
            pass

    def policy(self, st=None, now=0, capacity=0, sec_floor=None):
        full = slotstate.load(self.slots_state, self.factory_key_floor)
        st = st or full["fw"]
        p = self.profile
        return {"kind": "firmware", "product": p["product"], "board": p["board"],
                "sec_floor": st["sec_floor"] if sec_floor is None else sec_floor,
                "key_floor": full["key_floor"], "capacity": capacity, "now": now}

    def unconfirmed(self):
        """True while the running image is on trial (otadata NEW or PENDING_VERIFY)."""
        slot, state = otadata_state(self.Partition)
        return slot == self.running.info()[1] - 0x10 and state in (_NEW, _PENDING_VERIFY)

    # --- verification ------------------------------------------------------------------

    def verify_running(self, buf, sec_floor=None):
        """Authenticate the running image's stored bundle prefix and hash the image against
        it; returns bundle.Verified or raises Reject (NO_RECORD for a factory-flashed image)."""
        try:
            f = open(self.record_path(self.label), "rb")
        except OSError:
            raise Reject(verdicts.NO_RECORD, "%s was not installed from a bundle" % self.label)
        with f:
            v = bundle.authenticate(f, self.anchors, self.policy(
                capacity=self.running.info()[3], sec_floor=sec_floor))
            if f.readinto(buf):
                raise Reject(verdicts.EXTRA_BYTES,
                             "stored prefix of %s has trailing bytes" % self.label)
        entry = v.manifest["files"][0]
        if hash_partition(self.running, entry["size"], buf) != entry["digest"]:
            raise Reject(verdicts.BAD_FILE_HASH,
                         "the image in %s does not match its bundle" % self.label)
        return v

    # --- the boot sequence ---------------------------------------------------------------

    def boot_check(self, buf):
        """Run once per boot, before the application. Returns "none", "rolled_back" (the
        bootloader went back to the previous image), "trial" (confirm() after the self-test),
        "confirmed" (a confirmation cut short by a reset was completed) or "failed" (the
        trial image does not verify: restart without confirming, so it is rolled back)."""
        st = self.state()
        pending = st["pending"]
        if not pending:
            return "none"
        if pending != self.label:
            st["pending"] = None
            st["last"] = "firmware in %s did not confirm itself%s; running %s" % (
                pending, ": " + st["reason"] if st["reason"] else "", self.label)
            st["reason"] = ""
            self._try_save(st)
            self._forget(pending)  # it failed its trial: never verify or boot it again
            self.log("firmware: " + st["last"])
            return "rolled_back"
        try:
            self.verified = self.verify_running(buf)
        except Reject as e:
            self.rollback("the running image does not verify: %s" % e)
            return "failed"
        if otadata_state(self.Partition)[1] == _VALID:
            try:
                self._finish(st)
            except OSError as e:  # the floors rise on a later boot that can write
                self.log("firmware: state record cannot be written (%r)" % (e,))
                return "none"
            return "confirmed"
        self.trial = True
        self.log("firmware: trial of %s in %s" % (self.version, self.label))
        return "trial"

    @property
    def version(self):
        return self.verified.manifest["version"] if self.verified else None

    def confirm(self):
        """The self-test passed: cancel the bootloader's rollback, then raise the floors."""
        if not self.trial:
            return False
        try:
            self.Partition.mark_app_valid_cancel_rollback()
        except OSError as e:  # e.g. a build without app rollback: the trial stays open
            self.log("firmware: cannot confirm %s: %r" % (self.label, e))
            return False
        self.trial = False
        try:
            self._finish(self.state())
        except OSError as e:  # the bootloader has it as valid: the next boot finishes
            self.log("firmware: state record cannot be written (%r)" % (e,))
        return True

    def _finish(self, st):
        v = self.verified
        full = slotstate.load(self.slots_state, self.factory_key_floor)
        if full.get("lost") == "unreadable":
            raise OSError(5)  # see _save
        # The key floor is shared with the app slots: one revocation for both kinds.
        full["key_floor"] = max(full["key_floor"], v.cert.serial)
        st["pending"] = None
        st["reason"] = ""
        st["sec_floor"] = max(st["sec_floor"], v.manifest["security_version"])
        st["last"] = "confirmed firmware %s in %s" % (v.manifest["version"], self.label)
        full["fw"] = st
        slotstate.save(self.slots_state, full)  # key floor and firmware floor in one write
        self.log("firmware: " + st["last"])

    def rollback(self, reason):
        """The self-test failed: note why. The caller restarts the chip without confirming,
        and the bootloader goes back to the previous image."""
        st = self.state()
        if st["pending"] == self.label:
            st["reason"] = reason
            self._try_save(st)
        self.trial = False
        self.log("firmware: rolling back %s: %s" % (self.label, reason))

    def installer(self, progress=None, now=0):
        return Installer(self, progress, now)

    def install_stream(self, stream, buf, progress=None, now=0):
        return slots.pump(stream, buf, Installer(self, progress, now))


def hash_partition(part, size, buf):
    """SHA-256 of the first `size` bytes of a partition, read back through `buf`."""
    h = hashlib.sha256()
    mv = memoryview(buf)
    step = len(buf) - len(buf) % SECTOR or len(buf)
    pos = 0
    while pos < size:
        k = min(step, size - pos)
        part.readblocks(pos // SECTOR, mv[:k], pos % SECTOR)
        h.update(mv[:k])
        pos += k
    return h.digest()


class Installer(bundle.Fed):
    """Push-fed like slots.Installer: feed() the bundle bytes, then finish(). Nothing is written
    before the prefix is authenticated and every rule passes; the image then goes to the next
    OTA partition sector by sector (erase, program), hashed as it arrives, read back and hashed
    again, and only then recorded and made the boot partition."""

    def __init__(self, fw, progress=None, now=0):
        st = fw.state()
        if st["pending"]:
            raise Reject(verdicts.BUSY,
                         "firmware in %s still waits for its restart or confirmation"
                         % st["pending"])
        if fw.unconfirmed():
            raise Reject(verdicts.BUSY, "the running firmware has not confirmed itself yet")
        app = slotstate.load(fw.slots_state, fw.factory_key_floor)["pending"]
        if app:
            raise Reject(verdicts.BUSY,
                         "app slot %s is still on trial; confirm or roll back first" % app)
        self.fw = fw
        self.part = fw.running.get_next_update()
        self.target = self.part.info()[4]
        self.policy = fw.policy(st, now, self.part.info()[3])
        self.progress = progress
        self.verified = None
        self.written = 0
        self._pre = bundle.Prefix()
        self._sector = bytearray(SECTOR)
        self._fill = 0
        self._block = 0
        self._size = 0
        self._hash = None
        self._done = False

    @property
    def total(self):
        return self.verified.header.payload_len if self.verified else 0

    def _begin(self):
        self.verified = bundle.authenticate_prefix(self._pre.buf, self.fw.anchors, self.policy)
        self._pre = None
        files = self.verified.manifest["files"]
        if len(files) != 1 or not files[0]["size"]:
            raise Reject(verdicts.BAD_MANIFEST, "a firmware bundle holds exactly one image")
        self._size = files[0]["size"]
        self._hash = hashlib.sha256()
        self.fw._forget(self.target)  # from here on the partition's old record is void

    def _take(self, mv):
        n = min(self._size - self.written, len(mv), SECTOR - self._fill)
        if not n:
            raise Reject(verdicts.EXTRA_BYTES, "bytes after the image")
        self._sector[self._fill:self._fill + n] = mv[:n]
        self._hash.update(mv[:n])
        self._fill += n
        self.written += n
        if self._fill == SECTOR:
            self._flush()
        return n

    def _flush(self):
        buf = self._sector
        if self._block == 0:
            self._check_header(buf)
        if self._fill == SECTOR:
            self.part.writeblocks(self._block, buf)  # basic protocol: erase, then program
        else:
            self.part.ioctl(6, self._block)
            self.part.writeblocks(self._block, memoryview(buf)[:self._fill], 0)
        self._block += 1
        self._fill = 0

    def _check_header(self, buf):
        # Cheap sanity before the first write; esp32.Partition.set_boot() validates it all.
        if self._fill < 24 or buf[0] != IMAGE_MAGIC:
            raise Reject(verdicts.BAD_IMAGE, "payload is not an ESP app image")
        want = CHIP_IDS.get(self.fw.profile.get("chip"))
        got = buf[12] | buf[13] << 8
        if want is not None and got != want:
            raise Reject(verdicts.BAD_IMAGE, "image is for chip id %d, this board is %s"
                         % (got, self.fw.profile["chip"]))
        # ESP-IDF anti-rollback: the image's esp_app_desc_t.secure_version is what the
        # bootloader compares with the eFuse SECURE_VERSION (docs/secure-boot.md). When the
        # build sets one, it must be the bundle's security version: one floor, not two.
        if self._fill >= 40 and struct.unpack_from("<I", buf, 32)[0] == _APP_DESC_MAGIC:
            sv = struct.unpack_from("<I", buf, 36)[0]
            if sv and sv != self.verified.manifest["security_version"]:
                raise Reject(verdicts.BAD_IMAGE,
                             "image secure_version %d is not the bundle's security "
                             "version %d" % (sv, self.verified.manifest["security_version"]))

    def finish(self):
        """Check the whole image arrived and reads back intact, record it, make it boot next."""
        self._prefix_done()
        if self.written < self._size:
            raise Reject(verdicts.TRUNCATED, "bundle ended inside the image (%d bytes missing)"
                         % (self._size - self.written))
        if self._fill:
            self._flush()
        digest = self.verified.manifest["files"][0]["digest"]
        if self._hash.digest() != digest:
            raise Reject(verdicts.BAD_FILE_HASH, "the image does not match its manifest")
        if hash_partition(self.part, self._size, self._sector) != digest:
            raise Reject(verdicts.BAD_FILE_HASH, "%s reads back different from what was written"
                         % self.target)
        fw = self.fw
        fw._mkdir()
        files.write(fw.record_path(self.target), self.verified.prefix)
        st = fw.state()
        st["pending"] = self.target
        st["reason"] = ""
        st["last"] = "installed firmware %s into %s" % (self.verified.manifest["version"],
                                                      self.target)
        fw._save(st)  # before set_boot: a cut between the two is seen at boot as a rollback
        try:
            self.part.set_boot()
        except OSError as e:
            st["pending"] = None
            st["last"] = "the bootloader refused the image in %s (%r)" % (self.target, e)
            fw._save(st)
            fw._forget(self.target)
            raise Reject(verdicts.IMAGE_REFUSED, st["last"])
        self._done = True
        fw.log("firmware: " + st["last"])
        return self.verified

    def abort(self, keep=False):
        """Nothing to close: a partition without a record is never verified or booted.
        (`keep` is for installers that resume: a firmware image is fetched again.)"""
        if not self._done and self.verified is not None:
            self.fw._forget(self.target)

