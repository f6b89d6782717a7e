# The boot state record, one home for the app slots and the firmware image: active slot,
# pending trial, trials left, the anti-rollback floors, and the firmware image's own trial
# ("fw"). Kept by records.py in two copies with a sequence number and a CRC each, so that no
# single lost or garbled copy can lower a floor. When no copy is readable, load() says so
# ("lost"): the boot stage then takes the floors from the highest version that verifies
# (bootstage.Boot.recover), never from the factory defaults.
import records
from micropython import const

TRIALS = const(3)  # boots a pending slot gets to confirm itself before it is rolled back
SLOTS = ("a", "b")
_FIELDS = ("active", "pending", "trials", "sec_floor", "key_floor", "last", "fw", "swaps",
           "legacy")
# ROMFS slots (romslots.py): "a" is the primary region, "b" the secondary; "swaps" counts the
# exchanges of the two that the record accounts for (the swap log's generation); "legacy":
# the directory slot of a device that migrated, kept as its last fallback until the first
# ROMFS image confirms itself (None otherwise).
_FW = ("pending", "sec_floor", "last", "reason")


def other(slot):
    return "b" if slot == "a" else "a"


def default_fw():
    return {"pending": None, "sec_floor": 0, "last": "", "reason": ""}


def default(key_floor=1):
    return {"active": "a", "pending": None, "trials": 0, "sec_floor": 0,
            "key_floor": key_floor, "last": "", "fw": default_fw(), "swaps": 0, "legacy": None}


def _valid(st):
    return (isinstance(st, dict) and all(k in st for k in _FIELDS)
            and st["active"] in SLOTS and st["pending"] in (None, "a", "b")
            and st["pending"] != st["active"]
            and isinstance(st["trials"], int) and 0 <= st["trials"] <= TRIALS
            and isinstance(st["sec_floor"], int) and st["sec_floor"] >= 0
            and isinstance(st["key_floor"], int) and st["key_floor"] >= 1
            and isinstance(st["last"], str) and isinstance(st["fw"], dict)
            and all(k in st["fw"] for k in _FW) and isinstance(st["fw"]["sec_floor"], int)
            and isinstance(st["swaps"], int) and st["legacy"] in (None, "a", "b"))


def load(path, key_floor=1):
    """The newest valid copy of the record (never raises). With none readable: the defaults
    with "lost" ("missing": no copy at all, or
    "unreadable"), whose floors must not be used as they are (see the module header).
    The key floor never drops below the factory key floor."""
    st, _seq, status = records.load(path)
    if isinstance(st, dict) and "fw" not in st:
        st["fw"] = default_fw()  # a record from before the firmware trial moved in here
    if isinstance(st, dict) and "swaps" not in st:
        st["swaps"] = 0  # a record of directory slots (before ROMFS slots): carried over
        st["legacy"] = None
    if not _valid(st):
        st = default(key_floor)
        st["lost"] = "missing" if status == records.MISSING else "unreadable"
        st["last"] = "no state record yet" if status == records.MISSING else \
            "state record unreadable"
    elif status == records.REPAIRED:
        st["last"] = "one copy of the state record was garbled; the other was used"
    st["key_floor"] = max(st["key_floor"], key_floor)
    return st


def save(path, st):
    """Write the record (both copies, a new sequence number). Raises OSError if it cannot."""
    records.save(path, {k: st[k] for k in _FIELDS})
