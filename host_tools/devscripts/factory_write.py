# Device side of `iotctl provision --port`: mpremote runs this in the raw REPL, then calls
# begin(opts), put(name, base64) for each file and finish(). Each call prints one JSON line.
#
# esp32 boards: the `fctry` partition (esp32.Partition) gets a littlefs of the geometry the
# host passes (the board's board.json). unix board: the same partition of the simulated
# flash image in the current folder, through boards/unix/flash.py. A blank partition is
# formatted; one that holds a factory record, or data littlefs cannot mount, is left alone
# unless opts["force"] (never erase what cannot be read). Files are written temp-then-rename,
# identity.json last (its presence marks a complete record), then read back read-only.
import binascii
import hashlib
import json
import os
import sys
import vfs

_MNT = "/_fctry"
_S = {}


def _say(doc):
    print(json.dumps(doc))


def _partition(opts):
    if sys.platform == "esp32":
        import esp32

        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=opts["partition"])
        if not found:
            raise OSError(19)  # ENODEV
        return found[0]
    import flash  # the unix board's NOR flash model

    fl = flash.Flash(flash.board_config()["sim"]["image"])
    _S["flash"] = fl
    return fl.partition(opts["partition"])


def _blank(bdev):
    buf = bytearray(4096)
    for block in range(bdev.ioctl(4, 0)):
        bdev.readblocks(block, buf)
        for b in buf:
            if b != 0xFF:
                return False
    return True


def _lfs(bdev, lfs, make=False):
    kw = {"readsize": lfs["read_size"], "progsize": lfs["prog_size"],
          "lookahead": lfs["lookahead_size"]}
    if make:
        vfs.VfsLfs2.mkfs(bdev, **kw)
    return vfs.VfsLfs2(bdev, **kw)


def _unmount(path):
    try:
        vfs.umount(path)
    except OSError:
        pass


def begin(opts):
    _S.clear()
    _S["opts"] = opts
    _S["names"] = []
    if opts["platform"] != sys.platform:
        return _say({"ok": False, "code": "WRONG_BOARD",
                     "detail": "board runs %s, expected %s" % (sys.platform, opts["platform"])})
    try:
        bdev = _partition(opts)
    except OSError:
        return _say({"ok": False, "code": "NO_PARTITION", "detail": opts["partition"]})
    _S["bdev"] = bdev
    # The running application may have the factory data mounted: never two mounts at once.
    _unmount(opts.get("mounted", "/factory"))
    state = "blank"
    try:
        fs = _lfs(bdev, opts["lfs"])
        vfs.mount(fs, _MNT, readonly=True)
        try:
            names = os.listdir(_MNT)
        finally:
            vfs.umount(_MNT)
        state = "provisioned" if "identity.json" in names else "partial"
    except OSError:
        state = "blank" if _blank(bdev) else "unreadable"
    if state in ("provisioned", "unreadable") and not opts.get("force"):
        code = "ALREADY_PROVISIONED" if state == "provisioned" else "UNREADABLE"
        return _say({"ok": False, "code": code, "detail": "partition %s is %s; use force to "
                     "replace it" % (opts["partition"], state)})
    vfs.mount(_lfs(bdev, opts["lfs"], make=True), _MNT)
    _S["open"] = True
    _say({"ok": True, "was": state, "platform": sys.platform})


def put(name, b64):
    if not _S.get("open") or "/" in name or name.startswith("."):
        return _say({"ok": False, "code": "BAD_REQUEST", "detail": name})
    data = binascii.a2b_base64(b64)
    tmp = _MNT + "/" + name + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, _MNT + "/" + name)
    _S["names"].append(name)
    _say({"ok": True, "name": name, "size": len(data)})


def finish():
    if not _S.get("open"):
        return _say({"ok": False, "code": "BAD_REQUEST", "detail": "begin first"})
    vfs.umount(_MNT)
    _S["open"] = False
    vfs.mount(_lfs(_S["bdev"], _S["opts"]["lfs"]), _MNT, readonly=True)
    digests = {}
    try:
        for name in os.listdir(_MNT):
            h = hashlib.sha256()
            with open(_MNT + "/" + name, "rb") as f:
                h.update(f.read())
            digests[name] = binascii.hexlify(h.digest()).decode()
    finally:
        vfs.umount(_MNT)
    fl = _S.get("flash")
    if fl is not None:
        fl.close()
    _say({"ok": True, "files": digests})
