# Power-on sequence of a real ESP32 board (run by the frozen main.py): mount the factory and
# data partitions, settle the firmware image's trial, verify an app slot, run it, or enter
# alert-only mode. BoardBoot adds the firmware image to the boot stage: one self-test
# confirms (or rolls back) an app slot and a MicroPython image alike, and its installer takes
# both kinds of bundle.
import json
import vfs

import alertmode
import bootstage
import bundle
import fwupdate
import romslots
import verdicts
from bundle import Reject


class BoardBoot(bootstage.Boot):
    """bootstage.Boot plus `firmware` (fwupdate.Firmware): `trial` is also true while the
    running MicroPython image waits for its self-test."""

    firmware = None

    def recover_firmware(self, st):
        # A rebuilt state record: the firmware floor is the running image's security version.
        if self.firmware is not None:
            st["fw"]["sec_floor"] = self.firmware.running_floor(self.buf)

    def confirm(self):
        app = super().confirm()
        fw = self.firmware is not None and self.firmware.trial and self.firmware.confirm()
        self.trial = False
        return bool(app or fw)

    def rollback(self, reason):
        if self.firmware is not None and self.firmware.trial:
            self.firmware.rollback(reason)  # the reset below lets the bootloader roll it back
        super().rollback(reason)

    def installer(self, progress=None, now=0, resume=None, at=0, factory=False):
        return KindInstaller(self, progress, now, factory, resume, at)


class KindInstaller:
    """The push-fed installer for either kind of bundle: reads the 64-byte header, then hands
    the stream to the app-slot installer or the firmware installer (same feed/finish/abort).
    `resume`, `at`: what a pulled download cut by a power loss already wrote, kept by the app
    installer (romslots.Installer); a firmware image is downloaded again from its start."""

    def __init__(self, boot, progress=None, now=0, factory=False, resume=None, at=0):
        self._boot = boot
        self._progress = progress
        self._now = now
        self._factory = factory
        self._resume = resume
        self._at = at
        self._head = bytearray(bundle.HEADER_LEN)
        self._got = 0
        self.inner = None

    @property
    def target(self):
        return self.inner.target if self.inner else None

    @property
    def total(self):
        return self.inner.total if self.inner else 0

    @property
    def verified(self):
        return self.inner.verified if self.inner else None

    @property
    def present(self):
        """Image bytes a resumed download keeps from flash (bundle.Fed: 0 for a firmware
        image, which is fetched again)."""
        return self.inner.present if self.inner else 0

    def sync(self):
        """What a resumed download may keep (pullstate checkpoints it)."""
        return self.inner.sync() if self.inner else 0

    def feed(self, data):
        mv = memoryview(data)
        if self.inner is None:
            take = min(bundle.HEADER_LEN - self._got, len(mv))
            self._head[self._got:self._got + take] = mv[:take]
            self._got += take
            mv = mv[take:]
            if self._got < bundle.HEADER_LEN:
                return
            self.inner = self._choose(bundle.parse_header(self._head).kind)
            self.inner.feed(self._head)
        if len(mv):
            self.inner.feed(mv)

    def _choose(self, kind):
        boot, fw = self._boot, self._boot.firmware
        if kind == bundle.KIND_FIRMWARE:
            if fw is None:
                raise Reject(verdicts.WRONG_KIND, "this board takes no firmware bundles")
            return fw.installer(self._progress, self._now)
        if fw is not None and (fw.state()["pending"] or fw.unconfirmed()):
            raise Reject(verdicts.BUSY, "the firmware image is still on trial; confirm it first")
        return bootstage.Boot.installer(boot, self._progress, self._now, self._resume, self._at,
                                        self._factory)

    def finish(self):
        if self.inner is None:
            raise Reject(verdicts.TRUNCATED, "bundle ended inside its header")
        return self.inner.finish()

    def abort(self, keep=False):
        """keep: leave a partial app image for a resumed download."""
        if self.inner is not None:
            self.inner.abort(keep)


class NoRecovery:
    """Alert-only mode's recovery channel on a real board: none over the network. A service
    jig installs a signed recovery bundle over the serial REPL with install(path)."""

    def poll(self):
        return None


def _lfs(part, board_json, make=False, small=False):
    # small: the factory data, read a few times at start and kept mounted: littlefs's caches
    # (4 x the read size, two per mount and one per open file) at their least. The program
    # size stays as written: littlefs's commit layout depends on it.
    c = board_json["littlefs"]
    kw = {"readsize": c["prog_size"] if small else c["read_size"], "progsize": c["prog_size"],
          "lookahead": 32 if small else c["lookahead_size"]}
    if make:
        vfs.VfsLfs2.mkfs(part, **kw)
    return vfs.VfsLfs2(part, **kw)


def _blank(part, blocks=2):
    # littlefs keeps its superblock in blocks 0 and 1: format only if both are erased.
    buf = bytearray(4096)
    for b in range(blocks):
        part.readblocks(b, buf)
        if buf != b"\xff" * 4096:
            return False
    return True


def mount(part_cls, board_json, log):
    """Factory data read-only at /factory; the data filesystem at /data (moved from "/",
    where MicroPython's _boot.py mounts it). A data partition that holds something littlefs
    cannot read is left alone (never erase what cannot be read). Returns the problems."""
    problems = []
    mounted = set()
    for fs, path in vfs.mount():
        if path == "/" and type(fs).__name__ == "VfsLfs2":
            vfs.umount("/")
        else:
            mounted.add(path)  # already in place (a service jig after power-on): keep it
    if board_json["factory_mount"] not in mounted:
        try:
            vfs.mount(_lfs(part_cls(board_json["factory_partition"]), board_json, small=True),
                      board_json["factory_mount"], readonly=True)
        except OSError as e:
            problems.append("factory data cannot be mounted (%r)" % (e,))
    if board_json["data_mount"] in mounted:
        return problems
    part = part_cls(board_json["data_partition"])
    try:
        fs = _lfs(part, board_json)
    except OSError as e:
        if not _blank(part):
            problems.append("data filesystem cannot be mounted (%r)" % (e,))
            return problems
        log("board: formatting the blank data partition")
        fs = _lfs(part, board_json, make=True)
    vfs.mount(fs, board_json["data_mount"])
    return problems


def anchors(board_json):
    """The trust anchors: frozen into the firmware (production: `trust_anchors`, made by the
    manifest), else the factory record's anchors.json (development). The key floor is the
    higher of both."""
    algs = {"ed25519": bundle.ALG_ED25519, "ecdsa-p256": bundle.ALG_P256}
    floor = 1
    try:
        roots, floor = bootstage.load_anchors(board_json["factory_mount"] + "/anchors.json")
    except (OSError, ValueError, KeyError):
        roots = None
    try:
        import trust_anchors
    except ImportError:
        if roots is None:
            raise ValueError("no trust anchors: neither frozen nor in the factory data")
        return roots, floor
    doc = trust_anchors.ANCHORS
    return ([(algs[r["alg"]], bytes.fromhex(r["key"])) for r in doc["roots"]],
            max(floor, doc["key_floor"]))


def _rom_window(size):
    # MicroPython maps the partition labelled `romfs` (esp_partition_mmap): the only one.
    return memoryview(vfs.rom_ioctl(2, 0))[:size]


def regions(part_cls):
    """The app's ROMFS regions (romslots.Regions), or None for a partition table without
    them (directory slots on littlefs)."""
    try:
        parts = [part_cls(label) for label in ("romfs", "romfs_b", "romfs_s")]
    except (OSError, ValueError):
        return None
    return romslots.Regions(parts[0], parts[1], parts[2],
                            getattr(part_cls, "rom_window", _rom_window))


def boot_profile(board_json, part_cls=None):
    """The boot profile (bootstage.Boot.profile) from board.json and the factory identity."""
    with open(board_json["factory_mount"] + "/identity.json") as f:
        ident = json.loads(f.read())
    b = board_json
    return {"board": b["board"], "product": ident["product"], "chip": b["chip"],
            "capacity": b["slot_capacity"], "root": b["data_mount"],
            "anchors": b["factory_mount"] + "/anchors.json", "factory": b["factory_mount"],
            "regions": regions(part_cls) if part_cls else None}


def start(hal, part_cls, log=print):
    """Everything before the application: returns a BoardBoot whose slot is verified, or
    whose `slot` is None (alert-only mode, `reasons` say why)."""
    board_json = hal.board_json
    buf, space = bootstage.buffers()  # first, while the heap is in one piece
    problems = mount(part_cls, board_json, log)
    try:
        roots, floor = anchors(board_json)
        profile = boot_profile(board_json, part_cls)
    except (OSError, ValueError, KeyError) as e:
        roots, floor, profile = [], 1, None
        problems.append("factory record or trust anchors unreadable (%r): not provisioned?"
                        % (e,))
    boot = BoardBoot(hal, profile or {"root": board_json["data_mount"]}, roots, floor, buf, log,
                     space)
    boot.reasons.extend(problems)
    if problems:
        return boot
    fw = fwupdate.Firmware(part_cls, profile, roots, floor, log)
    if fw.boot_check(buf) == "failed":
        hal.reset()  # unconfirmed: the bootloader goes back to the previous image
    boot.firmware = fw
    boot.choose()
    if fw.trial:
        if boot.slot is None:
            # No app slot verifies under the new image: it is not good. Let it roll back.
            fw.rollback("no app slot verifies under it: " + "; ".join(boot.reasons))
            hal.reset()
        boot.trial = True  # the application's self-test decides for the image as well
    return boot


def install(path, factory=False, hal=None, part_cls=None):
    """Service jig (serial REPL): install the signed app bundle at `path` with every check
    (factory=True: into slot A, confirmed, as on the factory line) and return its version.
    Nothing else runs; restart the board to boot it."""
    hal = hal or _hal()
    problems = mount(part_cls or _partition(), hal.board_json, hal.log)
    if problems:
        raise OSError("; ".join(problems))
    roots, floor = anchors(hal.board_json)
    boot = BoardBoot(hal, boot_profile(hal.board_json, part_cls or _partition()), roots, floor,
                     bytearray(bootstage.BUF_SIZE), hal.log)
    with open(path, "rb") as f:
        return boot.install_stream(f, factory=factory).manifest["version"]


def jig(hal=None, part_cls=None):
    """Service jig: mount /factory and /data as at power-on, run nothing. Returns problems."""
    hal = hal or _hal()
    return mount(part_cls or _partition(), hal.board_json, hal.log)


def _hal():
    from hal import Hal

    return Hal()


def _partition():
    import esp32

    return esp32.Partition


def production_build():
    """A production firmware has its trust anchors frozen in (boards/common/manifest.py)."""
    try:
        import trust_anchors  # noqa: F401
    except ImportError:
        return False
    return True


def provisioned(board_json):
    """The factory record is in place (the factory line has written fctry)."""
    try:
        open(board_json["factory_mount"] + "/identity.json").close()
    except OSError:
        return False
    return True


def main(hal=None, part_cls=None, kbd_intr=None):
    """Power on: boot, then the application or alert-only mode (never returns).

    The serial console (4.6-1: no REPL in the production configuration). MicroPython offers its
    REPL on the UART when main.py ends or Ctrl-C interrupts it. A production build takes Ctrl-C
    away first thing, and on a provisioned board keeps it away and restarts rather than end:
    the REPL, raw REPL and soft reset are out of reach. A production board without a factory
    record gives Ctrl-C back once the boot stage has run, so that the factory line can
    provision it over the raw REPL (docs/provisioning.md). A development build never takes it.
    WebREPL never starts: only webrepl.start() would start it, nothing here calls it, and the
    frozen boot.py runs instead of any boot.py (webrepl_setup's) on the filesystem."""
    if kbd_intr is None:
        import micropython

        kbd_intr = micropython.kbd_intr
    hal = hal or _hal()
    locked = production_build()
    kbd_intr(-1 if locked else 3)  # main.py took it away first thing, before any import
    try:
        boot = start(hal, part_cls or _partition(), hal.log)
        if locked and not provisioned(hal.board_json):
            locked = False
            kbd_intr(3)
            hal.log("board: no factory record yet: the serial console stays open for the "
                    "factory line")
        if boot.slot is None:
            alertmode.run(boot, NoRecovery())
        hal.report(boot, "normal")
        boot.run_app()
    finally:
        if locked:
            hal.reset()  # never back to the REPL prompt
