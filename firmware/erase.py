# "Delete my data" on the flash (ETSI TS 103 645 4.11-1): the procedure described at the top
# of privacy.py. Imported only while a deletion runs or a power cut interrupted one, then
# dropped: an owner deletes their data rarely, and the code would otherwise stay in the heap.
import asyncio
import binascii
import os
import time

from micropython import const

import store
from files import exists, rmtree  # the boot stage's, frozen on a board

_RESERVE = const(8)  # free blocks left to other writers while the fill yields
_ENOSPC = const(28)
_DIR_BIT = const(0x4000)


def _copytree(src, dst, buf):
    os.mkdir(dst)
    for e in os.ilistdir(src):
        name = e[0]
        if e[1] & _DIR_BIT:
            _copytree(src + "/" + name, dst + "/" + name, buf)
        elif not name.endswith(".tmp"):
            with open(src + "/" + name, "rb") as fi, open(dst + "/" + name, "wb") as fo:
                while True:
                    n = fi.readinto(buf)
                    if not n:
                        break
                    fo.write(buf if n == len(buf) else memoryview(buf)[:n])


def rebuild(path, keep):
    """Give directory `path` new metadata blocks (the old ones, whose logs still hold every
    earlier version of its small files, become free): copy it when `keep`, else empty it."""
    new, old = path + ".new", path + ".old"
    rmtree(new)
    if keep and exists(path):
        _copytree(path, new, bytearray(256))
    else:
        os.mkdir(new)
    if exists(path):
        os.rename(path, old)
    os.rename(new, path)
    rmtree(old)


def recover(root):
    """Finish or undo a directory rebuild that a power cut interrupted."""
    for e in list(os.ilistdir(root)):
        name = e[0]
        if name.endswith(".new"):
            base = root + "/" + name[:-4]
            if exists(base):
                rmtree(root + "/" + name)
            else:
                os.rename(root + "/" + name, base)
        elif name.endswith(".old"):
            rmtree(root + "/" + name)


async def fill(root, chunk=4096):
    """Erase every free block: write a filler file until the filesystem is full, then remove
    it. Yields to the control loop except for the last few blocks. Returns blocks filled."""
    path = root + "/.fill"
    buf = bytearray(chunk)
    free = os.statvfs(root)[3]
    n = 0
    f = open(path, "wb")
    try:
        while True:
            f.write(buf)
            n += 1
            if n < free - _RESERVE:
                await asyncio.sleep_ms(0)
    except OSError as e:
        if e.args[0] != _ENOSPC:
            raise
    finally:
        try:
            f.close()
        except OSError:
            pass
        store.remove(path)
    return n



async def delete(priv, wipe):
    """Delete the personal data of `priv` (a privacy.Privacy) from the device and the flash,
    and queue the same request for the service. `wipe`: further directories to empty."""
    t0 = time.ticks_ms()
    rid = (priv.service_request() or priv.pending() or {}).get("id") \
        or binascii.hexlify(os.urandom(8)).decode()
    # Owner records keep a second copy in the directory beside theirs (store.save_record).
    wipe = tuple(wipe) + tuple(d + ".1" for d in (priv.dir,) + tuple(wipe) if exists(d + ".1"))
    store.save(priv.mark, {"wipe": list(wipe), "id": rid})
    th = priv.thermostat
    keep = [d for d in priv.keep_dirs if d not in wipe]
    if th is not None and th.path:
        settings_dir = th.path.rsplit("/", 1)[0]
        if settings_dir not in wipe:
            # Always written (both copies): a cut may have left the older copy with the
            # schedule in it.
            th.settings = dict(th.settings, schedule=[])
            store.save_record(th.path, th.settings)
            keep.append(settings_dir)
    for d in (priv.dir,) + tuple(wipe):
        rmtree(d)
    blocks = await fill(priv.root)
    for d in (priv.dir,) + tuple(wipe):
        rebuild(d, False)
    for d in keep:
        rebuild(d, True)
        if exists(d + ".1"):  # the second copy of its owner records (store.save_record)
            rebuild(d + ".1", True)
    store.save(priv.path("service-delete"), {"id": rid, "requested": int(priv.clock())})
    blocks += await fill(priv.root)
    return {"deleted": ["schedule", "name", "history", "consents"], "service": "queued",
            "request": rid, "erased_blocks": blocks, "ms": time.ticks_diff(time.ticks_ms(), t0)}
