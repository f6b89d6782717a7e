# App slots A and B on the data filesystem: verify a slot, stream a bundle into the inactive one.
import hashlib
import os

import bundle
import slotstate
import verdicts
from bundle import Reject
from files import exists, makedirs, rmtree, write


# Where slots live on the data filesystem: the one place that builds these paths (the state
# record's too, slotstate.path; the running app's folder: bootstage.Boot.app_dir).
def slot_dir(root, slot):
    return root + "/slots/" + slot


def prefix_path(root, slot):
    return root + "/slots/" + slot + ".bnd"


def invalidate(root, slot):
    """Make a slot unbootable by removing its signed prefix (one flash operation)."""
    try:
        os.remove(prefix_path(root, slot))
    except OSError:
        pass


def _walk(path, rel, out):
    for ent in os.ilistdir(path):
        name = ent[0]
        sub = rel + "/" + name if rel else name
        if ent[1] == 0x4000:
            _walk(path + "/" + name, sub, out)
        else:
            out.append(sub)
    return out


def verify_slot(root, slot, anchors, policy, buf):
    """Authenticate a slot's stored prefix and hash every file; returns bundle.Verified.

    The slot must hold exactly the files the manifest lists: an extra module could shadow
    a verified one on import."""
    try:
        f = open(prefix_path(root, slot), "rb")
    except OSError:
        raise Reject(verdicts.EMPTY_SLOT, "slot %s holds no installed bundle" % slot)
    with f:
        v = bundle.authenticate(f, anchors, policy)
        if f.readinto(buf):
            raise Reject(verdicts.EXTRA_BYTES,
                         "stored manifest of slot %s has trailing bytes" % slot)
    base = slot_dir(root, slot)
    for entry in v.manifest["files"]:
        h = hashlib.sha256()
        size = 0
        try:
            with open(base + "/" + entry["path"], "rb") as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    size += n
                    if n < len(buf):  # a short read is the end of the file: no extra call
                        h.update(memoryview(buf)[:n])
                        break
                    h.update(buf)
        except OSError:
            raise Reject(verdicts.BAD_FILE_HASH,
                         "%s is missing from slot %s" % (entry["path"], slot))
        if size != entry["size"] or h.digest() != entry["digest"]:
            raise Reject(verdicts.BAD_FILE_HASH, "%s in slot %s does not match its manifest"
                         % (entry["path"], slot))
    try:
        present = _walk(base, "", [])
    except OSError:
        present = []
    if len(present) != len(v.manifest["files"]):
        listed = set(e["path"] for e in v.manifest["files"])
        extra = [p for p in present if p not in listed]
        raise Reject(verdicts.EXTRA_FILE,
                     "slot %s holds unlisted files: %s" % (slot, ",".join(extra[:3])))
    return v


class Installer(bundle.Fed):
    """Push-fed installer: feed() the bundle bytes as they arrive, then finish().

    Nothing is written until the prefix is authenticated and every rule passes; the payload
    is then written file by file straight from the caller's buffer while it is hashed. The
    slot's signed prefix is written last and the state record after it, so a power cut at
    any point leaves the inactive slot either unusable (no prefix) or complete."""

    def __init__(self, root, state_path, anchors, policy, progress=None, factory=False,
                 space=None, resume=None):
        self.root = root
        self.state_path = state_path
        self.anchors = anchors
        self.policy = policy
        self.progress = progress
        self.factory = factory
        st = slotstate.load(state_path, policy["key_floor"])
        if st["pending"] and not factory:
            raise Reject(verdicts.BUSY, "slot %s is still on trial; confirm or roll back first"
                         % st["pending"])
        self.state = st
        # The factory programs slot A and confirms it; updates go to the inactive slot.
        self.target = "a" if factory else slotstate.other(st["active"])
        self.verified = None
        # space: a bytearray of bundle.MAX_PREFIX made at boot, while the heap was still in
        # one piece, to hold the signed prefix; without it the prefix gets its own allocation.
        self._pre = bundle.Prefix(space)
        self._files = None
        self._idx = 0
        self._left = 0
        self._fh = None
        self._hash = None
        self._done = False
        self.closed = False  # abort() ran: the caller is done with this installer
        self.written = 0
        # resume: a download cut by a power loss goes on. The files it completed and the part
        # of the file it was writing are kept, re-hashed from flash (each chunk also goes to
        # resume(chunk), the caller's whole-bundle hash); `present` counts those bytes.
        self.resume = resume
        self.present = 0

    def _begin(self):
        self.verified = bundle.authenticate_prefix(self._pre.buf, self.anchors, self.policy)
        self._pre = None
        # Invalidate the target slot first: from here on it has no prefix, so it is unusable.
        invalidate(self.root, self.target)
        if self.resume is None:
            rmtree(slot_dir(self.root, self.target))
        makedirs(slot_dir(self.root, self.target))
        self._files = self.verified.manifest["files"]
        self._idx = -1
        if self.resume is None:
            self._next_file()
        else:
            self._take_present()

    def _take_present(self):
        """Resume: walk the manifest's files in order through what the target slot holds.
        A complete file must match its hash; the first short one is reopened for appending
        with its hash state rebuilt from its bytes; a missing one starts the rest. Anything
        inconsistent raises Reject("RESUME") (the caller then starts afresh)."""
        buf = bytearray(512)
        mv = memoryview(buf)
        base = slot_dir(self.root, self.target) + "/"
        while True:
            self._idx += 1
            if self._idx >= len(self._files):
                return  # every file is there: finish() follows
            entry = self._files[self._idx]
            path = base + entry["path"]
            if not exists(path):
                self._idx -= 1
                self._next_file()
                return
            h = hashlib.sha256()
            n = 0
            with open(path, "rb") as f:
                while True:
                    k = f.readinto(buf)
                    if not k:
                        break
                    n += k
                    if n > entry["size"]:
                        raise Reject(verdicts.RESUME,
                                     "%s is longer than its manifest" % entry["path"])
                    h.update(mv[:k])
                    self.resume(mv[:k])
            self.present += n
            self.written += n
            if n < entry["size"]:
                self._fh = open(path, "ab")
                self._hash = h
                self._left = entry["size"] - n
                return
            if h.digest() != entry["digest"]:
                raise Reject(verdicts.RESUME, "%s does not match its manifest" % entry["path"])

    def sync(self):
        """Commit what was written of the current file (littlefs keeps it across a power
        cut only once synced): a checkpoint a resumed download can start from."""
        if self._fh:
            self._fh.flush()

    def _next_file(self):
        while True:
            if self._fh:
                self._fh.close()
                self._fh = None
                entry = self._files[self._idx]
                if self._hash.digest() != entry["digest"]:
                    raise Reject(verdicts.BAD_FILE_HASH,
                                 "%s does not match its manifest" % entry["path"])
            self._idx += 1
            if self._idx >= len(self._files):
                return
            entry = self._files[self._idx]
            path = slot_dir(self.root, self.target) + "/" + entry["path"]
            parent = path.rsplit("/", 1)[0]
            if not exists(parent):
                makedirs(parent)
            self._fh = open(path, "wb")
            self._hash = hashlib.sha256()
            self._left = entry["size"]
            if self._left:
                return

    def _take(self, mv):
        if self._fh is None:
            raise Reject(verdicts.EXTRA_BYTES, "bytes after the last file")
        n = min(self._left, len(mv))
        chunk = mv[:n]
        self._hash.update(chunk)
        self._fh.write(chunk)
        self._left -= n
        self.written += n
        if not self._left:
            self._next_file()
        return n

    @property
    def total(self):
        return self.verified.header.payload_len if self.verified else 0

    def finish(self):
        """Check that the whole bundle arrived, then publish the slot and mark it pending."""
        self._prefix_done()
        if self._fh is not None:
            raise Reject(verdicts.TRUNCATED, "bundle ended inside %s (%d bytes missing)"
                         % (self._files[self._idx]["path"], self._left))
        write(prefix_path(self.root, self.target), self.verified.prefix)
        st = self.state
        version = self.verified.manifest["version"]
        if self.factory:
            fw = st["fw"]
            st = slotstate.default(st["key_floor"])
            st["fw"] = fw
            st["sec_floor"] = self.verified.manifest["security_version"]
            st["key_floor"] = max(st["key_floor"], self.verified.cert.serial)
            st["last"] = "factory install of %s into slot a" % version
        else:
            st["pending"] = self.target
            st["trials"] = slotstate.TRIALS
            st["last"] = "installed %s into slot %s" % (version, self.target)
        slotstate.save(self.state_path, st)
        self._done = True
        return self.verified

    def abort(self, keep=False):
        """Close what is open and free a half-written slot (it has no prefix, so it is
        unusable), unless `keep`: a download that will resume later (it never boots either)."""
        self.closed = True
        if self._fh:
            self._fh.close()
            self._fh = None
        if self._files is not None and not self._done and not keep:
            try:
                rmtree(slot_dir(self.root, self.target))
            except OSError:
                pass


def pump(stream, buf, inst):
    """Feed a whole readinto() stream through `buf` into a push-fed installer (an app-slot or
    a firmware Installer), then finish it; a half-written target is freed on any failure."""
    try:
        while True:
            n = stream.readinto(buf)
            if not n:
                break
            inst.feed(memoryview(buf)[:n])
        return inst.finish()
    finally:
        inst.abort()


def install_stream(stream, buf, root, state_path, anchors, policy, progress=None, factory=False):
    """Install a whole bundle from a readinto() stream through `buf`; returns bundle.Verified."""
    return pump(stream, buf, Installer(root, state_path, anchors, policy, progress, factory))
