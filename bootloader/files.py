# Files on the data filesystem, the one home for the power-safe way to replace one: write the
# whole content to `<path>.tmp`, close it, then rename it over `path`. littlefs commits a file
# at close and a rename atomically, so a power cut leaves the old file or the new one, never
# a mix (at worst a stray .tmp, which readers ignore and the next write replaces). Also the
# folder helpers. Frozen with the boot stage, which uses it; the app imports it too.
import json
import os

TMP = ".tmp"  # suffix of a file being written


def write(path, data):
    """Replace file `path` by `data` (bytes, or str written as UTF-8), atomically."""
    tmp = path + TMP
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def write_json(path, obj):
    """Replace file `path` by `obj` as JSON, atomically."""
    write(path, json.dumps(obj))


def remove(path):
    """Remove file `path`; True if it existed."""
    try:
        os.remove(path)
        return True
    except OSError:
        return False


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def makedirs(d):
    """Make folder `d` and its parents; folders that exist are fine."""
    cur = ""
    for seg in d.split("/"):
        if seg:
            cur += "/" + seg
            try:
                os.mkdir(cur)
            except OSError:
                pass  # exists (any other failure shows at the first write into it)


def rmtree(path):
    """Remove a file, or a directory and everything in it; a missing path is fine. (The app's
    "delete my data" uses it too: on a board this code is frozen, not in the heap.)"""
    try:
        entries = list(os.ilistdir(path))
    except OSError:  # a file, or nothing
        try:
            os.remove(path)
        except OSError:
            pass
        return
    for ent in entries:
        rmtree(path + "/" + ent[0])
    os.rmdir(path)
