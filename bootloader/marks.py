# A one-bit fact kept in raw flash, outside littlefs, that no rollback of a filesystem can undo
# (docs/FORMAT.md "Marks"): an append-only counter whose parity is the fact. The owner's
# password record uses it (credentials.py): odd = an owner password has been set and not
# factory-reset since, so a record that littlefs loses is reported, never replaced in silence.
#   region `marks`: two 4 KiB sectors of 256 entries of 16 bytes. An entry is SET when more
#   than half of its 128 bits are 0, so one flipped bit never changes what it says, and a torn
#   program reads either way. Entry 0: open (the sector is in use); 1, 2: the epoch (1..3, its
#   bits); 3: the parity carried in; 4..255: one entry per event. Parity = carry + events.
#   Our writers program only entries that are wholly 0xFF (never over other bits). When the
#   events are used up, or an entry is neither clean nor blank (a torn program), the parity
#   is carried to the other, erased, sector with the next epoch (mod 3), opened last; then the
#   old sector is erased. Both open: the one whose epoch follows the other's is current.
from micropython import const

SECTOR = const(4096)
ENTRY = const(16)
_HALF = const(64)  # SET when more zeros than this
_OPEN = const(0)
_EPOCH = const(1)  # entries 1 and 2
_CARRY = const(3)
FIRST = const(4)  # the first event entry
ENTRIES = const(256)
_CHUNK = const(256)  # bytes read at a time: 16 entries
_BLANK = b"\xff" * _CHUNK  # a chunk of blank or of programmed entries is judged at once
_SET = bytes(_CHUNK)


def _zeros(buf, off):
    # Zero bits of the entry at buf[off:off + ENTRY].
    n = 0
    for i in range(off, off + ENTRY):
        b = buf[i]
        if b == 0xFF:
            continue
        if b == 0:
            n += 8
            continue
        b = ~b & 0xFF
        while b:
            b &= b - 1
            n += 1
    return n


class Sector:
    """What one sector says (Marks.scan)."""

    def __init__(self):
        self.blank = True  # every byte 0xFF
        self.open = False
        self.epoch = 0
        self.carry = 0
        self.events = 0  # SET event entries
        self.free = -1  # index of the first wholly blank event entry, -1 when none
        self.weak = False  # an entry neither blank nor clean (a torn program)

    def parity(self):
        return (self.carry + self.events) & 1


class Marks:
    """The parity counter over a block device `part` (the board's `marks` partition, two
    sectors: hal.marks()). value() and parity() read; set(p) makes the parity p (and the
    region written), safe against a power cut at any flash operation (the next set or repair
    finishes or undoes it)."""

    def __init__(self, part):
        self.part = part
        self._buf = bytearray(_CHUNK)
        self._zero = bytes(ENTRY)

    def scan(self, s):
        """Sector `s` (0 or 1) as a Sector."""
        info = Sector()
        buf = self._buf
        mv = memoryview(buf)
        for chunk in range(SECTOR // _CHUNK):
            self.part.readblocks(s, mv, chunk * _CHUNK)
            same = 0 if buf == _BLANK else 8 * ENTRY if buf == _SET else -1
            for k in range(_CHUNK // ENTRY):
                i = chunk * (_CHUNK // ENTRY) + k
                z = same if same >= 0 else _zeros(buf, k * ENTRY)
                if z:
                    info.blank = False
                elif i >= FIRST and info.free < 0:
                    info.free = i
                if 1 < z < 8 * ENTRY - 1:  # one flip away from clean is still clean
                    info.weak = True
                on = z > _HALF
                if i == _OPEN:
                    info.open = on
                elif i < _CARRY:
                    info.epoch |= on << (i - _EPOCH)
                elif i == _CARRY:
                    info.carry = int(on)
                else:
                    info.events += on
        return info

    def _current(self, a, b):
        # The index of the sector in force, or None (never set: parity 0).
        if a.open and b.open:
            if b.epoch == a.epoch % 3 + 1:
                return 1
            if a.epoch == b.epoch % 3 + 1:
                return 0
            return 1 if b.parity() > a.parity() else 0  # not reachable by one fault
        if a.open:
            return 0
        return 1 if b.open else None

    def value(self):
        """The parity, 0 or 1; None while the region has never been set (no sector open)."""
        a, b = self.scan(0), self.scan(1)
        cur = self._current(a, b)
        return None if cur is None else (a, b)[cur].parity()

    def parity(self):
        """0 or 1 (0 when never set)."""
        return self.value() or 0

    def repair(self):
        """Finish or undo what a power cut left: erase the sector not in force when it holds
        anything, and carry the parity to a fresh sector when the current one holds a torn
        entry. Returns (index of the current sector or None, its Sector)."""
        scans = [self.scan(0), self.scan(1)]
        cur = self._current(scans[0], scans[1])
        for s in (0, 1):
            if s != cur and not scans[s].blank:
                self.part.ioctl(6, s)
                scans[s] = Sector()
        if cur is not None and scans[cur].weak:
            cur = self._carry(cur, scans[cur].epoch, scans[cur].parity())
            scans[cur] = self.scan(cur)
        return cur, (None if cur is None else scans[cur])

    def set(self, parity):
        """Make the parity `parity` (0 or 1); True if a flash write was needed."""
        cur, info = self.repair()
        if cur is None:  # never written: even 0 is written, so that "reset" is told from "never"
            self._open(0, 1, parity)
            return True
        if info.parity() == parity:
            return False
        if info.free < 0:  # every event entry used: the parity moves on to the other sector
            self._carry(cur, info.epoch, parity)
        else:
            self._program(cur, info.free)
        return True

    def _program(self, s, i):
        # One entry to all zeros; it is wholly blank (checked: never a program over 0 bits).
        mv = memoryview(self._buf)[:ENTRY]
        self.part.readblocks(s, mv, i * ENTRY)
        if _zeros(self._buf, 0):
            raise OSError(5)  # the caller chose an entry that is not blank: a bug, not rot
        self.part.writeblocks(s, self._zero, i * ENTRY)

    def _open(self, s, epoch, parity):
        # Fill the header of the blank sector `s`; the open entry last commits it.
        for bit in (0, 1):
            if epoch >> bit & 1:
                self._program(s, _EPOCH + bit)
        if parity:
            self._program(s, _CARRY)
        self._program(s, _OPEN)

    def _carry(self, src, epoch, parity):
        # Move `parity` to the other (blank) sector with the next epoch, then erase `src`.
        dst = 1 - src
        self._open(dst, epoch % 3 + 1, parity)
        self.part.ioctl(6, src)
        return dst
