# Simulated NOR flash of the `unix` board: an image file, its partitions as block devices.
#
# The cells behave as NOR cells do: an erase sets a 4096-byte sector to 0xFF, and a program
# can only clear bits (the new content is old AND new). A program over bits that are not
# erased is allowed, as on the chip, but counted (`overprograms`): littlefs does it only after
# a torn program, and our own raw writers must never do it (their tests assert 0).
# Every program and erase is counted so that tests can cut the power at any one of them
# (mcuboot simulator style): the cut operation is torn in the shape asked for, then the flash
# is dead until the image is reopened. Shapes (cut_at), all drawn from a seeded generator:
#   program: "prefix" (the first k bytes reached the cells), "suffix" (the last k bytes),
#            "scatter" (any subset of the bits that were due to clear);
#   erase:   "half" (the first half erased), "residual" (stopped at once: 4.5 % of the old 0
#            bits still 0, scattered, as measured on a chip), "late" (15 us later: 0.35 %).
# An erase cut with a program shape takes the erase shape at the same index, and the other
# way round, so one shape index sweeps both kinds. `flip()` models bit rot at rest.
#
# The block-device callbacks (readblocks, writeblocks, ioctl) allocate nothing: they
# work through the caller's buffer and buffers made once in Flash(), so they may run
# with the heap locked.

import json
import micropython
import vfs
from micropython import const

SECTOR = const(4096)
_HALF = const(2048)
PROGRAM_SHAPES = ("prefix", "suffix", "scatter")
ERASE_SHAPES = ("half", "residual", "late")
# Residual 0 bits of a torn erase, out of 2**16: 4.5 % and 0.35 %.
_RESIDUAL = {"residual": 2949, "late": 229}
_EIO = const(5)
_EROFS = const(30)

_DIR = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
_config = None


class PowerCut(BaseException):
    """Power failed during a flash operation. A BaseException on purpose: code that
    catches `Exception` to keep running must not survive a dead device."""


def board_config():
    """The board's board.json as a dict (read once)."""
    global _config
    if _config is None:
        with open(_DIR + "/board.json") as f:
            _config = json.load(f)
    return _config


@micropython.viper
def _erased(buf: ptr8, n: int) -> int:
    # Machine-code loop: 1 if the first n bytes of buf are all 0xFF.
    i = 0
    while i < n:
        if buf[i] != 0xFF:
            return 0
        i += 1
    return 1


@micropython.viper
def _and(dst: ptr8, src: ptr8, off: int, n: int):
    # dst[i] &= src[off + i]: what the cells hold after a program over old content.
    i = 0
    while i < n:
        dst[i] = dst[i] & src[off + i]
        i += 1


def _num(text):
    text = text.strip()
    mult = 1
    if text[-1:] in ("K", "k"):
        mult, text = 1024, text[:-1]
    elif text[-1:] in ("M", "m"):
        mult, text = 1024 * 1024, text[:-1]
    return int(text, 0) * mult


def read_table(path):
    """Parse an ESP-IDF partition CSV: {name: (type, subtype, offset, size)}."""
    table = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cols = [c.strip() for c in line.split(",")]
            if len(cols) < 5:
                raise ValueError("partition table: short line")
            table[cols[0]] = (cols[1], cols[2], _num(cols[3]), _num(cols[4]))
    return table


class Flash:
    """NOR flash over an image file (opened r+b, read on demand, never loaded whole)."""

    all_overprograms = 0  # over every Flash of the process: tests of raw writers assert 0

    def __init__(self, path, table=None, seed=1):
        self._f = open(path, "r+b")
        self.size = self._f.seek(0, 2)
        self.ops = 0  # programs + erases since the image was opened
        self.overprograms = 0  # programs that covered bits which were not erased
        self.used_erases = 0  # erases of sectors that held data (what an aged fs does)
        self.torn = None  # (kind, shape) of the torn operation
        self._cut = 0  # 0: no cut armed
        self._shape = None
        self._rng = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1
        self._dead = False
        # Raised instead of a new PowerCut when the heap is locked; typically the caller
        # is the GC finaliser of a littlefs file left open by the cut, which prints it.
        self._late = PowerCut("dead flash used with the heap locked (file left open at the cut?)")
        self._ff = bytearray(b"\xff" * SECTOR)
        self._old = bytearray(SECTOR)
        self._table_path = table
        self._table = None
        self._regions = None  # romwindow.rom_regions()

    def close(self):
        self._f.close()

    def cut_at(self, n, shape=None):
        """Tear the n-th program/erase since the image was opened, then die: so
        `cut_at(flash.ops + 1)` tears the next one. None disarms. `shape`: a name or index of
        PROGRAM_SHAPES / ERASE_SHAPES; None is the legacy tear (half a program, half an erase)."""
        if isinstance(shape, str):
            if shape in PROGRAM_SHAPES:
                shape = PROGRAM_SHAPES.index(shape)
            elif shape in ERASE_SHAPES:
                shape = ERASE_SHAPES.index(shape)
            else:
                raise ValueError("unknown tear shape " + shape)
        if n is None:
            self._cut = 0
        elif n <= self.ops:
            raise ValueError("cut_at: operation already done")
        else:
            self._cut = n
            self._shape = shape

    def rand(self, n):
        """The model's seeded generator (xorshift32): an int in [0, n)."""
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        return x % n

    def flip(self, addr, bit):
        """Bit rot at rest: invert one bit of the byte at addr (device off; not an operation)."""
        self._check(addr, 1)
        b = bytearray(1)
        self._f.seek(addr)
        self._f.readinto(b)
        b[0] ^= 1 << (bit & 7)
        self._f.seek(addr)
        self._f.write(b)

    @property
    def dead(self):
        return self._dead

    def _die(self):
        try:
            exc = PowerCut()
        except MemoryError:
            exc = self._late
        raise exc

    def _check(self, addr, n):
        if self._dead:
            self._die()
        if addr < 0 or addr + n > self.size:
            raise ValueError("flash access out of range")

    def _tick(self):
        # Count one program/erase; True if this is the one to tear.
        self.ops += 1
        if self.ops == self._cut:
            self._dead = True
            return True
        return False

    def read(self, addr, buf):
        """Read len(buf) bytes at addr into buf."""
        self._check(addr, len(buf))
        f = self._f
        f.seek(addr)
        if f.readinto(buf) != len(buf):
            raise OSError(_EIO)

    def program(self, addr, buf):
        """Program buf at addr: each cell keeps old AND new (bits only go 1 -> 0)."""
        n = len(buf)
        self._check(addr, n)
        if not n:
            return
        f = self._f
        old = self._old
        if self._tick():
            self._tear_program(addr, buf, n)
            self._die()
        over = False
        done = 0
        while done < n:
            k = n - done
            if k > SECTOR:
                k = SECTOR
            f.seek(addr + done)
            f.readinto(old, k)
            if _erased(old, k):
                f.seek(addr + done)
                f.write(buf, done, k)
            else:
                over = True
                _and(old, buf, done, k)
                f.seek(addr + done)
                f.write(old, 0, k)
            done += k
        if over:
            self.overprograms += 1
            Flash.all_overprograms += 1

    def _tear_program(self, addr, buf, n):
        # Cut during a program: some of the bits due to clear reached the cells.
        shape = None if self._shape is None else PROGRAM_SHAPES[self._shape % 3]
        self.torn = ("program", shape or "legacy")
        lo, hi = 0, n // 2  # legacy: the first half
        if shape == "prefix":
            hi = self.rand(n)
        elif shape == "suffix":
            lo, hi = n - self.rand(n), n
        f, cell = self._f, bytearray(1)
        for i in range(lo, n if shape == "scatter" else hi):
            f.seek(addr + i)
            f.readinto(cell)
            new = cell[0] & buf[i]
            if shape == "scatter":  # a random subset of the bits that were due to clear
                new = cell[0] & ~((cell[0] & ~buf[i]) & self.rand(256))
            if new != cell[0]:
                cell[0] = new
                f.seek(addr + i)
                f.write(cell)

    def erase(self, addr):
        """Erase the 4096-byte sector at addr (sector aligned) to 0xFF."""
        self._check(addr, SECTOR)
        if addr % SECTOR:
            raise ValueError("erase address not sector aligned")
        f = self._f
        old = self._old
        f.seek(addr)
        f.readinto(old)
        if not _erased(old, SECTOR):
            self.used_erases += 1
        f.seek(addr)
        if self._tick():
            self._tear_erase(addr)
            self._die()
        f.write(self._ff)

    def _tear_erase(self, addr):
        # Cut during an erase. "half": the first half erased, the rest as it was. "residual",
        # "late": every cell went towards 1, but some old 0 bits are still 0, scattered.
        shape = None if self._shape is None else ERASE_SHAPES[self._shape % 3]
        self.torn = ("erase", shape or "half")
        f, old = self._f, self._old
        if shape in _RESIDUAL:
            odds = _RESIDUAL[shape]
            for i in range(SECTOR):
                zeros = ~old[i] & 0xFF
                keep = 0
                while zeros:
                    low = zeros & -zeros
                    if self.rand(65536) < odds:
                        keep |= low
                    zeros ^= low
                old[i] = 0xFF & ~keep
            f.write(old)
        else:
            f.write(self._ff, 0, _HALF)

    def table(self):
        """The partition table: {name: (type, subtype, offset, size)}."""
        if self._table is None:
            path = self._table_path or _DIR + "/" + board_config()["partition_table"]
            self._table = read_table(path)
        return self._table

    def partition(self, name, readonly=False):
        """A block device over the named partition."""
        entry = self.table().get(name)
        if entry is None:
            raise ValueError("no partition " + name)
        ptype, subtype, offset, size = entry
        if offset % SECTOR or size % SECTOR or offset + size > self.size:
            raise ValueError("partition " + name + " does not fit the flash")
        return Partition(self, name, ptype, subtype, offset, size, readonly)


class Partition:
    """One partition as a MicroPython block device (extended protocol, 4096-byte blocks)."""

    def __init__(self, flash, name, ptype, subtype, offset, size, readonly=False):
        self.flash = flash
        self.name = name
        self.type = ptype
        self.subtype = subtype
        self.offset = offset
        self.size = size
        self.readonly = readonly
        self.block_count = size // SECTOR

    def _addr(self, block, offset, n):
        if block < 0 or offset < 0 or offset >= SECTOR:
            raise ValueError("block or offset out of range")
        start = block * SECTOR + offset
        if start + n > self.size:
            raise ValueError("block access past end of partition")
        return self.offset + start

    def readblocks(self, block, buf, offset=0):
        # littlefs's hot path (about 1,200 calls to verify a slot): Flash.read and _addr
        # inline, same checks. A board reads its flash natively; the simulator should not make
        # file access look costlier than it is.
        n = len(buf)
        start = block * SECTOR + offset
        fl = self.flash
        if fl._dead:
            fl._die()
        if block < 0 or not 0 <= offset < SECTOR or start + n > self.size:
            raise ValueError("block access out of range")
        f = fl._f
        f.seek(self.offset + start)
        if f.readinto(buf) != n:
            raise OSError(_EIO)

    def writeblocks(self, block, buf, offset=None):
        if self.readonly:
            raise OSError(_EROFS)
        if offset is None:
            # Basic protocol (as esp32.Partition): whole blocks, erased first.
            n = len(buf)
            if n % SECTOR:
                raise ValueError("writeblocks without offset needs whole blocks")
            addr = self._addr(block, 0, n)
            for i in range(n // SECTOR):
                self.flash.erase(addr + i * SECTOR)
            self.flash.program(addr, buf)
        else:
            self.flash.program(self._addr(block, offset, len(buf)), buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.block_count
        if op == 5:  # block size
            return SECTOR
        if op == 6:  # erase one block
            if self.readonly:
                raise OSError(_EROFS)
            self.flash.erase(self._addr(arg, 0, SECTOR))
            return 0
        if op == 1 or op == 2 or op == 3:  # init, deinit, sync (writes are unbuffered)
            return 0
        return None

    def is_blank(self):
        """True if every byte of the partition is 0xFF (never written since erase)."""
        old = self.flash._old
        ff = self.flash._ff
        for i in range(self.block_count):
            self.flash.read(self.offset + i * SECTOR, old)
            if old != ff:
                return False
        return True


def _lfs(part, small=False):
    # small: the factory data, read a few times at start and kept mounted: littlefs's caches
    # (4 x the read size, two per mount and one per open file) at their least. The program
    # size stays as written: littlefs's commit layout depends on it.
    c = board_config()["littlefs"]
    read = c["prog_size"] if small else c["read_size"]
    return vfs.VfsLfs2(part, readsize=read, progsize=c["prog_size"],
                       lookahead=32 if small else c["lookahead_size"])


_mounted = None  # the Flash whose data filesystem is mounted: its ROMFS regions boot


def mounted_regions():
    """The ROMFS regions (romwindow.rom_regions) of the flash mounted last, or None."""
    if _mounted is None:
        return None
    import romwindow
    return romwindow.rom_regions(_mounted)


def mount_data(flash, mountpoint="/data", name=None):
    """Mount the data filesystem. Formats it only if the partition is blank (all 0xFF);
    a partition that holds data littlefs cannot mount raises OSError, untouched."""
    global _mounted
    _mounted = flash
    part = flash.partition(name or board_config()["data_partition"])
    try:
        fs = _lfs(part)
    except OSError:
        if not part.is_blank():
            raise
        c = board_config()["littlefs"]
        vfs.VfsLfs2.mkfs(part, readsize=c["read_size"], progsize=c["prog_size"],
                         lookahead=c["lookahead_size"])
        fs = _lfs(part)
    vfs.mount(fs, mountpoint)
    return fs


def mount_factory(flash, mountpoint="/factory", name=None):
    """Mount the factory-data filesystem read-only (block device refuses writes too)."""
    part = flash.partition(name or board_config()["factory_partition"], readonly=True)
    fs = _lfs(part, small=True)
    vfs.mount(fs, mountpoint, readonly=True)
    return fs


def unmount(*mountpoints):
    """Unmount (default: /data and /factory) as a restart does, also after a power cut: a
    dead flash raises PowerCut on the way, and what is not mounted is fine."""
    for mp in mountpoints or ("/data", "/factory"):
        try:
            vfs.umount(mp)
        except (OSError, PowerCut):
            pass


def copy_image(src, dst, buf=None):
    """Write the flash image file `src` over `dst`, as a programmer restores a saved image.
    (Test and tool use only: the device itself never copies images.)"""
    buf = buf or bytearray(65536)
    mv = memoryview(buf)
    with open(src, "rb") as a, open(dst, "r+b" if _exists(dst) else "wb") as b:
        while True:
            n = a.readinto(buf)
            if not n:
                break
            b.write(mv[:n])


def _exists(path):
    try:
        open(path, "rb").close()
        return True
    except OSError:
        return False

