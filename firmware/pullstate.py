# What a pulled update leaves behind for the next boot: the outcome record (which release was
# installed, from which rollout), so that the application reports, after the restart, whether
# the release confirmed itself or was rolled back and why (the boot stage's own words). The
# record is written after the installer finished and removed once the outcome is queued.
import hashlib

import store

OUTCOME_FILE = "/app/pulled.json"  # under the data root: device state, not personal data


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
