# Small JSON records on the data filesystem, replaced atomically (files.write: temp, rename).
# Once the app calls use(sealer) (sealed.py), records under the data root are sealed at rest.
# The owner's records (password, settings) go through load_record/save_record: two copies with
# a sequence number and a CRC each (the boot stage's records.py, frozen on a board), so that a
# flipped bit costs one copy, never the record; a record that is lost all the same is reported
# (LOST), so that the caller tells the owner instead of silently applying a default. Each copy
# is sealed on its own, bound to its own path.
import json

import files
import records
from records import LOST, MISSING, OK, REPAIRED  # noqa: F401  (the statuses, for callers)
from files import makedirs, remove  # noqa: F401  (the boot stage's file helpers, frozen)

_seal = None


def use(sealer):
    """Seal the records `sealer` covers from now on (None: plain JSON, e.g. in tests)."""
    global _seal
    _seal = sealer


def seal(path, data):
    """The bytes to store at `path` for `data`: sealed where the sealer covers the path (files
    that are not JSON records, e.g. the cloud link's queue)."""
    return _seal.seal(path, data) if _seal is not None and _seal.covers(path) else data


def unseal(path, blob):
    """`blob` read from `path`, opened where it is sealed; ValueError when it fails."""
    return _seal.open(path, blob) if _seal is not None and _seal.covers(path) else blob


def read(path):
    """The record at `path`; OSError when it is missing, ValueError when it is unreadable."""
    if _seal is not None and _seal.covers(path):
        return json.loads(_seal.read(path))
    with open(path) as f:
        return json.load(f)  # parsed as it is read: no copy of the whole file


def _codec(path):
    # (seal, open) for both copies of the owner record at `path`, or (None, None) when plain.
    if _seal is not None and _seal.covers(path):
        return _seal.seal, _seal.open
    return None, None


def load(path, default=None):
    """The record at `path`, or `default` when it is missing or unreadable."""
    try:
        return read(path)
    except (OSError, ValueError):
        return default


def save(path, obj):
    """Write `obj` as JSON to a temporary file and rename it over `path` (files.write)."""
    if _seal is not None and _seal.covers(path):
        files.write(path, _seal.seal(path, json.dumps(obj)))
    else:
        files.write_json(path, obj)


def load_record(path, default=None):
    """(value, status) of an owner record: the newest valid copy, or `default` with status
    MISSING (never written) or LOST (written, but no copy is readable)."""
    value, _seq, status = records.load(path, _codec(path)[1])
    return (default, status) if value is None else (value, status)


def save_record(path, obj):
    """Write an owner record: both copies, each write-temp-then-rename."""
    seal_, open_ = _codec(path)
    records.save(path, obj, seal=seal_, unseal=open_)


def remove_record(path):
    """Remove both copies of an owner record; True if one existed."""
    return records.remove(path)

