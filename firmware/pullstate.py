# What a pulled update keeps across restarts and power cuts:
# - the download's checkpoint: the announced SHA-256 and the bundle's signed prefix. After a
#   power cut the prefix is authenticated again, the files already in the inactive slot are
#   re-hashed from flash (the whole-bundle hash with them), and the download goes on from
#   the last bytes littlefs committed (synced every SYNC_BYTES);
# - the outcome record (which release was installed, from which rollout), so that the
#   application reports, after the restart, whether the release confirmed itself or was
#   rolled back and why (the boot stage's own words).
import hashlib

from micropython import const

import files
import store
import verdicts
from bundle import Reject

OUTCOME_FILE = "/app/pulled.json"  # under the data root: device state, not personal data
CKPT_FILE = "/app/download.json"
PREFIX_FILE = "/app/download.prefix"
SYNC_BYTES = const(32768)  # at most this much of a download is fetched again after a cut


class Download:
    """One announced bundle streaming into the inactive slot, resumable after a power cut.
    `got` is where the next request starts; `resumed_from` is what the flash already held
    (0 for a fresh start). Raises Reject("BUSY") while the last update is on trial."""

    def __init__(self, session, root, sha256, log=None):
        self.root = root
        self.sha = sha256
        self.hash = hashlib.sha256()
        self.got = 0
        self.resumed_from = 0
        self.inst = None
        self._synced = 0
        self._saved = False
        rec = store.load(root + CKPT_FILE)
        prefix = None
        at = 0
        if isinstance(rec, dict) and rec.get("sha256") == sha256:
            at = rec.get("at", 0) if isinstance(rec.get("at"), int) else 0
            try:
                with open(root + PREFIX_FILE, "rb") as f:
                    prefix = f.read()
            except OSError:
                prefix = None
        if prefix:
            self.inst = session.installer(resume=self.hash.update, at=at)
            try:
                self.hash.update(prefix)
                self.inst.feed(prefix)  # authenticated again; the slot's files re-hashed
                self.got = self.resumed_from = self._synced = len(prefix) + self.inst.present
                self._saved = True
                return
            except (Reject, OSError) as e:
                if log:
                    log("update: the interrupted download cannot go on (%s); starting again"
                        % (e,))
                self.inst.abort()
                self.hash = hashlib.sha256()
                self.got = self._synced = 0
        forget(root)
        self.inst = session.installer()

    def feed(self, chunk):
        """The next bytes of the bundle (from offset `got`)."""
        self.inst.feed(chunk)  # may raise Reject: nothing is written before the checks
        self.hash.update(chunk)
        self.got += len(chunk)
        if not self._saved and self.inst.verified is not None:
            files.write(self.root + PREFIX_FILE, self.inst.verified.prefix)
            store.save(self.root + CKPT_FILE, {"sha256": self.sha})
            self._saved = True
        if self.got - self._synced >= SYNC_BYTES:
            at = self.inst.sync()
            if at:  # a raw region: what a resume keeps is recorded with the checkpoint
                store.save(self.root + CKPT_FILE, {"sha256": self.sha, "at": at})
            self._synced = self.got

    def finish(self):
        """The whole bundle arrived: it must match the announced hash; then the slot is
        published (bundle.Verified). Raises Reject."""
        import binascii

        if binascii.hexlify(self.hash.digest()).decode() != self.sha:
            forget(self.root)  # what the flash holds is not the announced bundle
            raise Reject(verdicts.BAD_HASH,
                         "downloaded bundle does not match the announced SHA-256")
        v = self.inst.finish()
        forget(self.root)
        return v

    def close(self, keep):
        """Release the installer; `keep`: leave the partial slot and the checkpoint for a
        later resume (a network failure), else free both."""
        if self.inst is not None:
            keep = keep and self._saved
            self.inst.abort(keep)
            if not keep:
                forget(self.root)


def forget(root):
    store.remove(root + CKPT_FILE)
    store.remove(root + PREFIX_FILE)


def in_cohort(rollout, device_id):
    """A staged rollout admits a device when SHA-256(rollout id "/" device id), read as a
    32-bit big-endian number, is below the announced bound: the same devices stay in as the
    bound grows (host_tools/rollout.py computes the bound)."""
    if rollout is None:
        return True
    h = hashlib.sha256((rollout["id"] + "/" + device_id).encode()).digest()
    return int.from_bytes(h[:4], "big") < rollout["below"]


def check_rollout(doc):
    """Validate an announcement's {"id", "below"}; returns it, or raises ValueError."""
    if not isinstance(doc, dict) or sorted(doc) != ["below", "id"]:
        raise ValueError('rollout must be {"id", "below"}')
    rid, below = doc["id"], doc["below"]
    if not isinstance(rid, str) or not 0 < len(rid) <= 40 or \
            not all(c.isalpha() or c.isdigit() or c in "-_." for c in rid):
        raise ValueError("rollout id must be 1 to 40 letters, digits, '-', '_' or '.'")
    if isinstance(below, bool) or not isinstance(below, int) or not 0 <= below <= 1 << 32:
        raise ValueError("rollout below must be 0..2^32")
    return {"id": rid, "below": below}


def installed(root, version, sha256, rollout):
    """Remember the release just installed (before the restart into its trial)."""
    rec = {"version": version, "sha256": sha256}
    if rollout:
        rec["rollout"] = rollout
    store.save(root + OUTCOME_FILE, rec)


def outcome(root, boot):
    """(event, sha256): the outcome of the last pulled release once it is known, an event
    dict ({"type": "update", "state": "confirmed"|"rolled_back", ...}), or None (nothing
    pulled, or its trial still runs); sha256 is the release's, or that of the last release
    that rolled back. The caller queues the event, then calls done()."""
    rec = store.load(root + OUTCOME_FILE)
    if not isinstance(rec, dict):
        return None, None
    if isinstance(rec.get("rolled_back"), str):
        return None, rec["rolled_back"]
    if not isinstance(rec.get("version"), str) or not isinstance(rec.get("sha256"), str):
        return None, None
    st = boot.state()
    ev = {"type": "update", "version": rec["version"]}
    if rec.get("rollout"):
        ev["rollout"] = rec["rollout"]
    if boot.version == rec["version"]:
        if boot.trial or st["pending"]:
            return None, None  # the self-test has not decided yet
        ev["state"] = "confirmed"
    elif st["pending"]:
        return None, None  # installed, the restart into the trial has not happened yet
    else:
        last = st["last"]
        ev["state"] = "rolled_back"
        ev["reason"] = (last[13:] if last.startswith("rolled back: ") else last)[:200]
        ev["running"] = boot.version
    return ev, rec["sha256"]


def done(root, ev, sha):
    """The outcome is queued: forget the release, but remember one that rolled back, so that
    its announcement (still retained) does not install it again."""
    if ev["state"] == "rolled_back":
        store.save(root + OUTCOME_FILE, {"rolled_back": sha})
    else:
        store.remove(root + OUTCOME_FILE)
