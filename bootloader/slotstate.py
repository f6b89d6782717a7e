# The boot state record (active slot, pending trial, anti-rollback floors), replaced atomically.
import json
import os

from micropython import const

TRIALS = const(3)  # boots a pending slot gets to confirm itself before it is rolled back
SLOTS = ("a", "b")
_FIELDS = ("active", "pending", "trials", "sec_floor", "key_floor", "last")


def other(slot):
    return "b" if slot == "a" else "a"


def default(key_floor=1):
    return {"active": "a", "pending": None, "trials": 0, "sec_floor": 0,
            "key_floor": key_floor, "last": ""}


def _valid(st):
    return (isinstance(st, dict) and all(k in st for k in _FIELDS)
            and st["active"] in SLOTS and st["pending"] in (None, "a", "b")
            and st["pending"] != st["active"]
            and isinstance(st["trials"], int) and 0 <= st["trials"] <= TRIALS
            and isinstance(st["sec_floor"], int) and st["sec_floor"] >= 0
            and isinstance(st["key_floor"], int) and st["key_floor"] >= 1
            and isinstance(st["last"], str))


def load(path, key_floor=1):
    """Read the state record; a missing or unreadable record gives the default (never raises).

    The floors never drop below the factory key floor, so losing the record cannot
    re-admit a revoked key; the slots themselves are still verified before use."""
    try:
        with open(path) as f:
            st = json.loads(f.read())
    except (OSError, ValueError):
        st = None
    if not _valid(st):
        st = default(key_floor)
        st["last"] = "state record missing or unreadable; using defaults"
    st["key_floor"] = max(st["key_floor"], key_floor)
    return st


def save(path, st):
    """Write the record to a temporary file, then rename it over the old one (atomic on littlefs)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps({k: st[k] for k in _FIELDS}))
    os.rename(tmp, path)
