# App slots as signed ROMFS images in raw flash (docs/FORMAT.md "ROMFS slots"). A board maps
# exactly one ROMFS partition (MicroPython's ESP32 port: the one labelled `romfs`), so, as in
# mcuboot: the primary region `romfs` holds the image that runs, the secondary `romfs_b`
# receives a download while the app keeps running, and the boot stage exchanges the two,
# sector by sector through the scratch sector of `romfs_s`, logging each step, so that a
# power cut anywhere resumes the exchange and the old image stays for a rollback.
#   region: [signed prefix][0xFF up to the next sector][ROMFS image]
#   romfs_s: sector 0 the scratch copy, sectors 1.. the swap log (8-byte records, each
#            programmed once into erased cells: kind, generation, sector index, CRC-32).
import binascii
import hashlib
import struct

from micropython import const

import bundle
import verdicts
from bundle import HEADER_LEN, Reject

SECTOR = const(4096)
IMAGE = "app.romfs"  # the one file of a ROMFS app bundle: the image itself
_REC = const(8)
BEGIN = const(0xB0)
_STEP = const(0x10)  # + 1, 2, 3: the three moves of one sector
_DONE = const(0xD0)
_SLACK = const(64)  # log cells kept for records torn by power cuts


def image_offset(prefix_len):
    return (prefix_len + SECTOR - 1) // SECTOR * SECTOR


def is_romfs(manifest):
    files = manifest["files"]
    return len(files) == 1 and files[0]["path"] == IMAGE


def _blocks(part):
    return part.ioctl(4, 0)


def read(part, addr, mv):
    part.readblocks(addr // SECTOR, mv, addr % SECTOR)


def program(part, addr, mv):
    part.writeblocks(addr // SECTOR, mv, addr % SECTOR)


def erase(part, sector):
    part.ioctl(6, sector)


def used(part, buf):
    """Bytes of `part` its stored image spans (prefix, padding, image), by its header alone
    (nothing authenticated: this only says how much a swap must move); 0 if none parses."""
    mv = memoryview(buf)[:HEADER_LEN]
    read(part, 0, mv)
    try:
        h = bundle.parse_header(mv)
    except Reject:
        return 0
    n = image_offset(bundle.prefix_len(h)) + h.payload_len
    return n if n <= _blocks(part) * SECTOR else _blocks(part) * SECTOR


def capacity(regions):
    """The largest image the regions and the swap log can take."""
    size = min(_blocks(regions.primary), _blocks(regions.secondary))
    cells = (_blocks(regions.swap) - 1) * (SECTOR // _REC) - 2 - _SLACK
    size = min(size, cells // 3)
    return size * SECTOR - image_offset(bundle.MAX_PREFIX)


def invalidate(part):
    """Make a region unbootable: erase its first sector, which holds the signed header."""
    erase(part, 0)


def verify(part, anchors, policy, buf, space, window=None, name="?"):
    """Authenticate the region's stored prefix, then hash its image in one pass: where the
    board maps the region (`window(size)`, Regions.window: the primary), in place, so the
    bytes hashed are the bytes that will be mounted; else read through `buf`. Returns
    bundle.Verified (its prefix in `space`, a bytearray of bundle.MAX_PREFIX)."""
    mv = memoryview(space)
    read(part, 0, mv[:HEADER_LEN])
    if bytes(mv[:4]) != b"IOTB":
        raise Reject(verdicts.EMPTY_SLOT, "region %s holds no image" % name)
    plen = bundle.prefix_len(bundle.parse_header(mv[:HEADER_LEN]))
    read(part, HEADER_LEN, mv[HEADER_LEN:plen])
    v = bundle.authenticate_prefix(mv[:plen], anchors, policy)
    if not is_romfs(v.manifest):
        raise Reject(verdicts.BAD_MANIFEST, "a ROMFS region holds one file, " + IMAGE)
    entry = v.manifest["files"][0]
    off, n = image_offset(plen), entry["size"]
    if off + n > _blocks(part) * SECTOR:
        raise Reject(verdicts.TOO_LARGE, "image runs past the end of region %s" % name)
    if window is not None:
        digest = hashlib.sha256(window(off + n)[off:off + n]).digest()
    else:
        digest = _hash(part, off, n, buf).digest()
    if digest != entry["digest"]:
        raise Reject(verdicts.BAD_FILE_HASH, "image in region %s does not match its manifest"
                     % name)
    return v


def _hash(part, off, n, buf, h=None, also=None):
    h = h or hashlib.sha256()
    mv = memoryview(buf)
    end = off + n
    while off < end:
        k = min(len(buf), end - off)
        read(part, off, mv[:k])
        h.update(mv[:k])
        if also:
            also(mv[:k])
        off += k
    return h


class Installer(bundle.Fed):
    """Push-fed installer of a ROMFS image into a region, the interface of slots.Installer:
    feed() the bundle's bytes, then finish(). Nothing is written before the prefix is
    authenticated and every rule passes; then the region's prefix sectors are erased (it is
    unbootable from here), the image is programmed as it arrives (each sector erased when the
    writing enters it: no program ever covers unerased bits) and hashed; finish() reads the
    image back and hashes it again, and only then programs the signed prefix.
    `at`, with `resume`: the image bytes a download cut by a power loss already wrote (a
    multiple of SECTOR, from sync()); they are re-hashed from flash, through resume(chunk)."""

    def __init__(self, part, target, anchors, policy, publish, progress=None, space=None,
                 resume=None, at=0):
        self.part = part
        self.target = target
        self.anchors = anchors
        self.policy = policy
        self.publish = publish  # publish(verified): records the slot (the state record)
        self.progress = progress
        self._pre = bundle.Prefix(space)
        self._space = space
        self._buf = None  # for reading back: what `space` has beyond the prefix (_begin)
        self.verified = None
        self.closed = False
        self.written = 0
        self.present = 0
        self.resume = resume
        self._at = at if resume is not None else 0
        self._hash = None
        self._off = 0
        self._left = 0
        self._erased = 0

    def _begin(self):
        v = bundle.authenticate_prefix(self._pre.buf, self.anchors, self.policy)
        if not is_romfs(v.manifest):
            raise Reject(verdicts.BAD_MANIFEST,
                         "this board takes ROMFS app images: one file, " + IMAGE)
        self._pre = None
        self.verified = v
        plen = len(v.prefix)
        tail = (len(self._space) - plen) // 1024 * 1024 if self._space else 0
        self._buf = memoryview(self._space)[plen:plen + tail] if tail else bytearray(1024)
        size = v.manifest["files"][0]["size"]
        self._off = image_offset(len(v.prefix))
        if self._off + size > _blocks(self.part) * SECTOR:
            raise Reject(verdicts.TOO_LARGE, "image does not fit slot %s" % self.target)
        for s in range(self._off // SECTOR):
            erase(self.part, s)  # the old header goes first: the region is unbootable now
        at = min(self._at, size) // SECTOR * SECTOR
        self._hash = hashlib.sha256()
        if at:
            _hash(self.part, self._off, at, self._buf, self._hash, self.resume)
        self.present = self.written = at
        self._erased = self._off + at
        self._left = size - at

    def sync(self):
        """The image bytes a resumed download can keep (whole sectors: programs are not
        buffered, but a sector being written is erased again when the writing re-enters it)."""
        return self.written // SECTOR * SECTOR

    def _take(self, mv):
        if not self._left:
            raise Reject(verdicts.EXTRA_BYTES, "bytes after the image")
        n = min(self._left, len(mv))
        addr = self._off + self.written
        while self._erased < addr + n:
            erase(self.part, self._erased // SECTOR)
            self._erased += SECTOR
        self._hash.update(mv[:n])
        program(self.part, addr, mv[:n])
        self.written += n
        self._left -= n
        return n

    @property
    def total(self):
        return self.verified.header.payload_len if self.verified else 0

    def finish(self):
        """Check the whole image arrived and reads back as hashed; then publish it (program
        the prefix). Returns bundle.Verified; the caller records the slot as pending."""
        self._prefix_done()
        if self._left:
            raise Reject(verdicts.TRUNCATED, "bundle ended %d bytes before the end of the image"
                         % self._left)
        digest = self.verified.manifest["files"][0]["digest"]
        if self._hash.digest() != digest:
            raise Reject(verdicts.BAD_FILE_HASH, "%s does not match its manifest" % IMAGE)
        if _hash(self.part, self._off, self.written, self._buf).digest() != digest:
            raise Reject(verdicts.BAD_FILE_HASH, "the image read back from flash differs")
        program(self.part, 0, self.verified.prefix)
        self.publish(self.verified)
        return self.verified

    def abort(self, keep=False):
        self.closed = True


class Regions:
    """The board's three ROMFS partitions (block devices with the extended protocol, as
    esp32.Partition) and `window()`: the primary region as the board maps it (a memoryview)."""

    def __init__(self, primary, secondary, swap, window):
        self.primary = primary
        self.secondary = secondary
        self.swap = swap
        self.window = window


class Swap:
    """The exchange of the primary and secondary regions, resumable after any power cut.
    For each sector i, last to first (the headers move last): scratch <- S[i], S[i] <- P[i],
    P[i] <- scratch, each step logged after it completed. A step is redone until its record
    is in the log, and its source is intact until then: the next step overwrites it only
    after the record. Generation: the state record's swap count + 1 (mod 256)."""

    def __init__(self, regions, buf):
        self.r = regions
        self.buf = buf  # SECTOR bytes
        self._ff = b"\xff" * _REC
        self._blank = b"\xff" * SECTOR

    def _cell(self, i, rec):
        read(self.r.swap, SECTOR + i * _REC, rec)

    def first(self):
        """(kind, gen, idx) of the log's first record, or None."""
        rec = memoryview(self.buf)[:_REC]
        self._cell(0, rec)
        return _parse(rec)

    def scan(self):
        """(generation, next step (i, s) or None when done, next free cell)."""
        rec = memoryview(self.buf)[:_REC]
        cells = (_blocks(self.r.swap) - 1) * (SECTOR // _REC)
        last, gen, i = None, None, 0
        while i < cells:
            self._cell(i, rec)
            if bytes(rec) == self._ff:
                break
            got = _parse(rec)
            if got is not None and (gen is None and got[0] == BEGIN or got[1] == gen):
                gen = got[1]
                last = got
            i += 1
        if last is None:
            return None, None, i
        kind, gen, idx = last
        if kind == _DONE:
            return gen, None, i
        if kind == BEGIN:
            return gen, (idx - 1, 1) if idx else None, i
        s = kind - _STEP
        if s < 3:
            return gen, (idx, s + 1), i
        return gen, (idx - 1, 1), i  # idx 0: every sector moved, only DONE is missing

    def _log(self, cell, kind, gen, idx):
        if cell >= (_blocks(self.r.swap) - 1) * (SECTOR // _REC):
            raise OSError(28)  # log full: more torn records than the slack allows
        rec = bytearray(_REC)
        struct.pack_into("<BBH", rec, 0, kind, gen, idx)
        struct.pack_into("<I", rec, 4, binascii.crc32(rec[:4]) & 0xFFFFFFFF)
        program(self.r.swap, SECTOR + cell * _REC, rec)
        return cell + 1

    def clear(self):
        """Erase the log (factory install: no swap has happened yet)."""
        rec = memoryview(self.buf)[:_REC]
        self._cell(0, rec)
        if bytes(rec) == self._ff:
            return  # reads as empty already (the scan stops at the first blank cell)
        for s in range(1, _blocks(self.r.swap)):
            erase(self.r.swap, s)

    def start(self, gen):
        """Begin exchanging: erase the log, record the generation and the sectors to move."""
        n = max(used(self.r.primary, self.buf), used(self.r.secondary, self.buf))
        n = max(1, (n + SECTOR - 1) // SECTOR)
        for s in range(1, _blocks(self.r.swap)):
            erase(self.r.swap, s)
        cell = self._log(0, BEGIN, gen & 0xFF, n)
        self._run(gen & 0xFF, (n - 1, 1), cell)

    def resume(self):
        """Finish an exchange the log shows unfinished; returns its generation (or None)."""
        gen, nxt, cell = self.scan()
        if gen is not None and nxt is not None:
            self._run(gen, nxt, cell)
        return gen

    def _copy(self, src, src_addr, dst, dst_addr):
        mv = memoryview(self.buf)
        read(src, src_addr, mv)
        erase(dst, dst_addr // SECTOR)
        if self.buf != self._blank:  # a blank sector stays as the erase left it
            program(dst, dst_addr, mv)

    def _run(self, gen, nxt, cell):
        p, s, x = self.r.primary, self.r.secondary, self.r.swap
        i, step = nxt
        while i >= 0:
            a = i * SECTOR
            if step == 1:
                self._copy(s, a, x, 0)
            elif step == 2:
                self._copy(p, a, s, a)
            else:
                self._copy(x, 0, p, a)
            cell = self._log(cell, _STEP + step, gen, i)
            if step == 3:
                i, step = i - 1, 1
            else:
                step += 1
        self._log(cell, _DONE, gen, 0)


def _parse(rec):
    if binascii.crc32(bytes(rec[:4])) & 0xFFFFFFFF != struct.unpack_from("<I", rec, 4)[0]:
        return None
    kind, gen, idx = struct.unpack_from("<BBH", rec, 0)
    if kind not in (BEGIN, _DONE, _STEP + 1, _STEP + 2, _STEP + 3):
        return None
    return kind, gen, idx
