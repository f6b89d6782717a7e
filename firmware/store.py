# Small JSON records on the data filesystem, replaced atomically (write temp, then rename).
# The owner's records (password, settings) go through load_record/save_record: two copies with
# a sequence number and a CRC each (the boot stage's records.py, frozen on a board), so that a
# flipped bit costs one copy, never the record; a record that is lost all the same is reported
# (LOST), so that the caller tells the owner instead of silently applying a default.
import json
import os

import records
from records import LOST, MISSING, OK, REPAIRED  # noqa: F401  (the statuses, for callers)


def load(path, default=None):
    """The record at `path`, or `default` when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)  # parsed as it is read: no copy of the whole file
    except (OSError, ValueError):
        return default


def save(path, obj):
    """Write `obj` as JSON to a temporary file and rename it over `path`."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(obj))
    os.rename(tmp, path)


def load_record(path, default=None):
    """(value, status) of an owner record: the newest valid copy, or `default` with status
    MISSING (never written) or LOST (written, but no copy is readable)."""
    value, _seq, status = records.load(path)
    return (default, status) if value is None else (value, status)


def save_record(path, obj):
    """Write an owner record: both copies, each write-temp-then-rename."""
    records.save(path, obj)


def remove_record(path):
    """Remove both copies of an owner record; True if one existed."""
    return records.remove(path)


def remove(path):
    try:
        os.remove(path)
        return True
    except OSError:
        return False


def makedirs(path):
    cur = ""
    for seg in path.split("/"):
        if seg:
            cur += "/" + seg
            try:
                os.mkdir(cur)
            except OSError:
                pass
