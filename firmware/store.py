# Small JSON records on the data filesystem, replaced atomically (write temp, then rename).
# Once the app calls use(sealer) (sealed.py), records under the data root are sealed at rest.
import json
import os

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


def load(path, default=None):
    """The record at `path`, or `default` when it is missing or unreadable."""
    try:
        return read(path)
    except (OSError, ValueError):
        return default


def save(path, obj):
    """Write `obj` as JSON to a temporary file and rename it over `path`."""
    tmp = path + ".tmp"
    if _seal is not None and _seal.covers(path):
        with open(tmp, "wb") as f:
            f.write(_seal.seal(path, json.dumps(obj)))
    else:
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
