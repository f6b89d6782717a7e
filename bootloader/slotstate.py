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
_FIELDS = ("active", "pending", "trials", "sec_floor", "key_floor", "last", "fw", "swaps")
# ROMFS slots (romslots.py): slots "a" and "b" are images, not places. "swaps" counts the
# exchanges of the primary region (the one a board maps and runs) and the secondary region
# that the record accounts for; the swap log keeps the same count (mod 256), so that its
# parity, which says which slot is in the primary (primary()), survives a lost record.
_FW = ("pending", "sec_floor", "last", "reason")


def other(slot):
    return "b" if slot == "a" else "a"


def path(root):
    """The record's path under the data root (records.py keeps its second copy beside)."""
    return root + "/slots/state.json"


def primary(st):
    """The slot whose image is in the primary region (ROMFS slots)."""
    return SLOTS[st["swaps"] & 1]


def default_fw():
    return {"pending": None, "sec_floor": 0, "last": "", "reason": ""}


def default(key_floor=1):
    return {"active": "a", "pending": None, "trials": 0, "sec_floor": 0,
            "key_floor": key_floor, "last": "", "fw": default_fw(), "swaps": 0}


def _valid(st):
    return (isinstance(st, dict) and all(k in st for k in _FIELDS)
            and st["active"] in SLOTS and st["pending"] in (None, "a", "b")
            and st["pending"] != st["active"]
            and isinstance(st["trials"], int) and 0 <= st["trials"] <= TRIALS
            and isinstance(st["sec_floor"], int) and st["sec_floor"] >= 0
            and isinstance(st["key_floor"], int) and st["key_floor"] >= 1
            and isinstance(st["last"], str) and isinstance(st["fw"], dict)
            and all(k in st["fw"] for k in _FW) and isinstance(st["fw"]["sec_floor"], int)
            and isinstance(st["swaps"], int) and st["swaps"] >= 0)


def load(path, key_floor=1):
    """The newest valid copy of the record (never raises). With none readable: the defaults
    with "lost" ("missing": no copy at all, or
    "unreadable"), whose floors must not be used as they are (see the module header).
    The key floor never drops below the factory key floor."""
    st, _seq, status = records.load(path)
    if isinstance(st, dict) and "fw" not in st:
        st["fw"] = default_fw()  # a record from before the firmware trial moved in here
    if isinstance(st, dict) and "swaps" not in st:
        # A record of directory slots (before ROMFS slots), carried over: its regions are
        # empty, so the active slot is taken to be the primary's and an update goes to the
        # secondary.
        st["swaps"] = 0 if st.get("active") != "b" else 1
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
