# Small JSON records on the data filesystem, replaced atomically (write temp, then rename).
import json
import os


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
