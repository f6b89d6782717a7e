# A strict fake of MicroPython's esp32.Partition on the simulated NOR flash, with ESP-IDF's
# otadata and a model of its second-stage bootloader (app choice and automatic rollback).
#
# Every erase and program goes through boards/unix/flash.py, so tests can cut the power at
# any of them. Stricter than the chip on purpose: erase only whole 4 KiB sectors, program
# only erased bytes, and never write the partition the code is running from.
#
# otadata: two 4 KiB sectors, each starting with an esp_ota_select_entry_t:
#   <u32 ota_seq, 20 bytes seq_label, u32 ota_state, u32 crc>, crc = CRC-32 of ota_seq only.
# The valid entry with the highest sequence number selects ota_[(seq - 1) % app_count].
# Not modelled: Secure Boot v2 signature checks, anti-rollback eFuses, a factory app.
import binascii
import struct

import micropython
from micropython import const

SECTOR = const(4096)
NEW = const(0)
PENDING_VERIFY = const(1)
VALID = const(2)
INVALID = const(3)
ABORTED = const(4)
UNDEFINED = const(0xFFFFFFFF)
STATE_NAMES = {NEW: "NEW", PENDING_VERIFY: "PENDING_VERIFY", VALID: "VALID",
               INVALID: "INVALID", ABORTED: "ABORTED", UNDEFINED: "UNDEFINED"}
_ERR_VALIDATE = const(0x1503)  # ESP_ERR_OTA_VALIDATE_FAILED
_ERR_NOT_FOUND = const(0x105)  # ESP_ERR_NOT_FOUND
_ENTRY = "<I20sII"
_SUBTYPES = {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "fat": 0x81,
             "spiffs": 0x82, "littlefs": 0x83, "factory": 0x00, "test": 0x20}


class _Chip:
    """The powered-on chip: its flash, the app the bootloader started, what it did."""

    def __init__(self):
        self.flash = None
        self.running = None  # label of the running app partition
        self.chip_id = None  # image chip id the bootloader accepts (None: any)
        self.log = []  # what the last boot() did, for tests
        self.buf = bytearray(SECTOR)


_chip = _Chip()


@micropython.viper
def _xor(buf: ptr8, n: int, acc: int) -> int:
    i = 0
    while i < n:
        acc ^= buf[i]
        i += 1
    return acc


def _crc(seq):
    return binascii.crc32(struct.pack("<I", seq), 0xFFFFFFFF)


def _table():
    """[(label, type, subtype, offset, size)] of the flash's partition table, in table order."""
    out = []
    for label, (ptype, sub, off, size) in _chip.flash.table().items():
        t = 0 if ptype == "app" else 1
        if sub.startswith("ota_"):
            s = 0x10 + int(sub[4:])
        else:
            s = _SUBTYPES[sub] if sub in _SUBTYPES else int(sub, 0)
        out.append((label, t, s, off, size))
    out.sort(key=lambda p: p[3])
    return out


def _apps():
    """The OTA app partitions ordered by subtype (ota_0, ota_1, ...)."""
    apps = [p for p in _table() if p[1] == 0 and 0x10 <= p[2] < 0x20]
    apps.sort(key=lambda p: p[2])
    return apps


def _otadata():
    for p in _table():
        if p[1] == 1 and p[2] == 0:
            return p
    raise OSError(-_ERR_NOT_FOUND)


def read_entries():
    """Both otadata entries as [seq, label, state, crc] lists."""
    off = _otadata()[3]
    raw = bytearray(32)
    out = []
    for i in (0, 1):
        _chip.flash.read(off + i * SECTOR, raw)
        out.append(list(struct.unpack(_ENTRY, raw)))
    return out


def _invalid(e):
    return e[0] == 0xFFFFFFFF or e[2] == INVALID or e[2] == ABORTED


def _valid(e):
    return not _invalid(e) and e[3] == _crc(e[0])


def active_entry(entries):
    """Index of the entry the bootloader follows (highest valid sequence), or -1."""
    v0, v1 = _valid(entries[0]), _valid(entries[1])
    if v0 and v1:
        return 0 if entries[0][0] >= entries[1][0] else 1
    return 0 if v0 else 1 if v1 else -1


def _write_entry(i, e):
    # As ESP-IDF does: erase the entry's sector, then program the 32-byte entry.
    e[3] = _crc(e[0])
    off = _otadata()[3] + i * SECTOR
    _chip.flash.erase(off)
    _chip.flash.program(off, struct.pack(_ENTRY, e[0], e[1], e[2], e[3]))


def image_length(offset, size, chip_id=None):
    """Validate the ESP app image at `offset` (header, segments, checksum, appended SHA-256)
    as the bootloader and esp_ota_set_boot_partition() do; return its length or raise
    ValueError with the reason."""
    import hashlib

    fl, buf = _chip.flash, _chip.buf
    mv = memoryview(buf)
    hdr = mv[:24]
    fl.read(offset, hdr)
    if buf[0] != 0xE9:
        raise ValueError("no app image (magic 0x%02x)" % buf[0])
    nseg, chip, hashed = buf[1], buf[12] | buf[13] << 8, buf[23]
    if not 0 < nseg <= 16:
        raise ValueError("bad segment count %d" % nseg)
    if chip_id is not None and chip != chip_id:
        raise ValueError("image is for chip id %d, this chip is %d" % (chip, chip_id))
    pos, csum = 24, 0xEF
    for _ in range(nseg):
        if pos + 8 > size:
            raise ValueError("segment header past the partition")
        fl.read(offset + pos, mv[:8])
        n = struct.unpack_from("<I", buf, 4)[0]
        pos += 8
        if n > size - pos:
            raise ValueError("segment past the partition")
        end = pos + n
        while pos < end:
            k = min(SECTOR, end - pos)
            fl.read(offset + pos, mv[:k])
            csum = _xor(buf, k, csum)
            pos += k
    pos += 15 - pos % 16
    length = pos + 1 + (32 if hashed else 0)
    if length > size:
        raise ValueError("image footer past the partition")
    fl.read(offset + pos, mv[:1])
    if buf[0] != csum & 0xFF:
        raise ValueError("checksum mismatch")
    if hashed:
        h = hashlib.sha256()
        done = 0
        while done < pos + 1:
            k = min(SECTOR, pos + 1 - done)
            fl.read(offset + done, mv[:k])
            h.update(mv[:k])
            done += k
        fl.read(offset + pos + 1, mv[:32])
        if h.digest() != bytes(mv[:32]):
            raise ValueError("SHA-256 mismatch")
    return length


def power_off():
    """Cut the power: unmount what the last run mounted (/data, /factory) and close its flash
    image, so that the image can be changed as with a programmer."""
    import flash

    flash.unmount()
    if _chip.flash is not None:
        _chip.flash.close()
        _chip.flash = None


def power_on(image, chip_id=0):
    """Power off, then on over the flash image file `image`: returns (its Flash, the label
    of the app the bootloader starts, or None)."""
    import flash

    power_off()
    fl = flash.Flash(image)
    return fl, boot(fl, chip_id)


def boot(flash, chip_id=None):
    """Power on: the second-stage bootloader with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE.
    Returns the label of the app it starts (Partition.RUNNING), or None if none is bootable."""
    _chip.flash, _chip.chip_id, _chip.running, _chip.log = flash, chip_id, None, []
    log = _chip.log
    entries = read_entries()
    for i in (0, 1):
        # An image still on trial when the chip restarts did not confirm itself: abort it.
        if entries[i][2] == PENDING_VERIFY:
            entries[i][2] = ABORTED
            _write_entry(i, entries[i])
            log.append("otadata[%d] PENDING_VERIFY -> ABORTED" % i)
    apps = _apps()
    initial = False
    if _invalid(entries[0]) and _invalid(entries[1]):
        index = 0  # no factory app in our tables: try ota_0
        initial = all(e[0] == 0xFFFFFFFF or e[3] != _crc(e[0]) for e in entries)
    else:
        act = active_entry(entries)
        if act < 0:
            index = -1  # otadata unusable and no factory app: try every partition
        else:
            index = (entries[act][0] - 1) % len(apps)
            if entries[act][2] == NEW:
                entries[act][2] = PENDING_VERIFY
                _write_entry(act, entries[act])
                log.append("otadata[%d] NEW -> PENDING_VERIFY" % act)
    order = list(range(index, -1, -1)) + list(range(index + 1, len(apps)))
    for i in order:
        if i < 0:
            continue
        label, _, _, off, size = apps[i]
        try:
            image_length(off, size, chip_id)
        except ValueError as e:
            log.append("%s is not bootable: %s" % (label, e))
            continue
        if initial:
            _write_entry(0, [i + 1, b"\xff" * 20, VALID, 0])
            log.append("otadata[0] initialised to seq %d" % (i + 1))
        _chip.running = label
        log.append("booted " + label)
        return label
    log.append("no bootable app")
    return None


def boot_log():
    return list(_chip.log)


class Partition:
    """esp32.Partition over the simulated flash (after boot()), with the same methods."""

    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=4096):
        if block_size != SECTOR:
            raise ValueError("the fake supports block_size 4096 only")
        if _chip.flash is None:
            raise OSError(19)  # no chip powered on
        if id == Partition.RUNNING:
            label = _chip.running
        elif id == Partition.BOOT:
            label = _boot_label()
        elif isinstance(id, str):
            label = id
        else:
            raise ValueError("bad partition id")
        for p in _table():
            if p[0] == label:
                self._p = p
                return
        raise OSError(2)  # ENOENT, as MicroPython raises for a missing partition

    @staticmethod
    def find(type=0, subtype=0xFF, label=None, block_size=4096):
        return [Partition(p[0], block_size) for p in _table()
                if p[1] == type and (subtype == 0xFF or p[2] == subtype)
                and (label is None or p[0] == label)]

    def info(self):
        label, t, s, off, size = self._p
        return (t, s, off, size, label, False)

    def __repr__(self):
        return "<Partition %s>" % self._p[0]

    def _addr(self, block, offset, n):
        start = block * SECTOR + offset
        if block < 0 or offset < 0 or start + n > self._p[4]:
            raise OSError(22)  # ESP_ERR_INVALID_SIZE
        return self._p[3] + start

    def _writable(self):
        if self._p[0] == _chip.running:
            raise OSError(13)  # the fake refuses to overwrite the code it runs
        return True

    def readblocks(self, block, buf, offset=0):
        _chip.flash.read(self._addr(block, offset, len(buf)), buf)

    @staticmethod
    def rom_window(size):
        """What vfs.rom_ioctl(2, 0) maps on a board: the `romfs` partition (first `size`
        bytes). esp32.Partition has no such method; esp32board uses vfs.rom_ioctl there."""
        import romwindow
        return romwindow.RomWindow(_chip.flash.partition("romfs"))(size)

    def writeblocks(self, block, buf, offset=None):
        self._writable()
        if offset is None:
            addr = self._addr(block, 0, len(buf))
            if len(buf) % SECTOR:
                raise OSError(22)  # the erase must cover whole sectors
            for i in range(len(buf) // SECTOR):
                _chip.flash.erase(addr + i * SECTOR)
            _chip.flash.program(addr, buf)
        else:
            _chip.flash.program(self._addr(block, offset, len(buf)), buf)

    def ioctl(self, op, arg):
        if op in (1, 2, 3):
            return 0
        if op == 4:
            return self._p[4] // SECTOR
        if op == 5:
            return SECTOR
        if op == 6:
            self._writable()
            _chip.flash.erase(self._addr(arg, 0, SECTOR))
            return 0
        return None

    def get_next_update(self):
        """The OTA app partition after this one (esp_ota_get_next_update_partition)."""
        apps = _apps()
        labels = [a[0] for a in apps]
        i = labels.index(self._p[0]) if self._p[0] in labels else -1
        for k in range(1, len(apps) + 1):
            cand = apps[(i + k) % len(apps)]
            if cand[0] != self._p[0]:
                return Partition(cand[0])
        raise OSError(2)

    def set_boot(self):
        """esp_ota_set_boot_partition: validate the image, then write the next otadata entry
        (sequence chosen so that it selects this partition) with state NEW."""
        label, t, s, off, size = self._p
        if t != 0 or not 0x10 <= s < 0x20:
            raise OSError(22)
        try:
            image_length(off, size, _chip.chip_id)
        except ValueError:
            raise OSError(-_ERR_VALIDATE)
        slot, n = s - 0x10, len(_apps())
        entries = read_entries()
        act = active_entry(entries)
        if act < 0:
            nxt, seq = 0, slot + 1
        elif (entries[act][0] - 1) % n == slot:
            nxt, seq = act, entries[act][0]  # already selected: only the state changes
        else:
            nxt, seq, cur, i = act ^ 1, 0, entries[act][0], 0
            while cur > (slot + 1) % n + i * n:
                i += 1
            seq = (slot + 1) % n + i * n
        e = entries[nxt]
        e[0], e[2] = seq, NEW
        _write_entry(nxt, e)

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        """esp_ota_mark_app_valid_cancel_rollback: the active entry becomes VALID (in place)."""
        entries = read_entries()
        act = active_entry(entries)
        if act < 0:
            raise OSError(1)  # ESP_FAIL: "Running firmware is factory"
        if entries[act][2] != VALID:
            entries[act][2] = VALID
            _write_entry(act, entries[act])


def _boot_label():
    # esp_ota_get_boot_partition: the partition otadata selects, else the first OTA app.
    apps = _apps()
    entries = read_entries()
    act = active_entry(entries)
    if act < 0:
        return apps[0][0]
    return apps[(entries[act][0] - 1) % len(apps)][0]


def ota_state():
    """(label selected by otadata or None, state name): for tests and logs."""
    entries = read_entries()
    act = active_entry(entries)
    if act < 0:
        return None, None
    apps = _apps()
    return apps[(entries[act][0] - 1) % len(apps)][0], STATE_NAMES.get(entries[act][2], "?")
