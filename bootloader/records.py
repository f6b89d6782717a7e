# Records that survive one lost or garbled copy: each is kept twice, in two directories (two
# littlefs metadata pairs, so that one commit littlefs drops after a bit flip cannot take
# both), each copy with a sequence number and a CRC-32. The newest valid copy wins. A save
# writes both copies in turn, each write-temp-then-rename: a cut between them leaves one
# copy new and one old, and the new one wins.
#   copy format: JSON [seq, value] on one line, then the CRC-32 of that line in hex; the app
#   may pass a codec that seals each copy at rest (sealed.py via store.py).
import binascii
import json

from files import TMP, makedirs, write
from files import remove as _remove

MISSING = 0  # no copy exists
OK = 1  # the newest copy is valid (the other may be older or missing)
REPAIRED = 2  # a copy exists but is garbled; the other one was used
LOST = 3  # copies exist, none is valid


def paths(path):
    """The two copies of the record at `path`: itself, and the same name in dir + ".1"."""
    d, name = path.rsplit("/", 1)
    return path, d + ".1/" + name


def _crc(text):
    return "%08x" % (binascii.crc32(text.encode()) & 0xFFFFFFFF)


def _read(path, unseal=None):
    # (seq, value) of a valid copy; None if missing; False if present but garbled.
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    try:
        text = (unseal(path, blob) if unseal else blob).decode()
    except ValueError:  # fails authentication, or not UTF-8 (UnicodeError is a ValueError)
        return False
    line, _, crc = text.partition("\n")
    try:
        if crc.strip() == _crc(line):
            doc = json.loads(line)
            if isinstance(doc, list) and len(doc) == 2 and isinstance(doc[0], int):
                return doc[0], doc[1]
            return False
        if not crc:  # a plain JSON record from before copies had a CRC: sequence 0
            return 0, json.loads(line)
    except ValueError:
        pass
    return False


def load(path, unseal=None):
    """(value or None, seq, status): the newest valid copy; status is MISSING, OK, REPAIRED
    or LOST (seq -1 when there is no value). `unseal(path, bytes)` opens a sealed copy."""
    best, bad, seen = None, False, False
    for p in paths(path):
        got = _read(p, unseal)
        if got is None:
            continue
        seen = True
        if got is False:
            bad = True
        elif best is None or got[0] > best[0]:
            best = got
    if best is None:
        return None, -1, LOST if seen else MISSING
    return best[1], best[0], REPAIRED if bad else OK


def save(path, value, seq=None, seal=None, unseal=None):
    """Write `value` to both copies with sequence `seq` (default: the newest + 1);
    `seal(path, bytes)` seals each copy for its own path, `unseal` reads them back."""
    if seq is None:
        seq = load(path, unseal)[1] + 1
    line = json.dumps([seq, value])
    text = (line + "\n" + _crc(line) + "\n").encode()
    for p in paths(path):
        makedirs(p.rsplit("/", 1)[0])
        write(p, seal(p, text) if seal else text)
    return seq


def remove(path):
    """Remove both copies; True if one existed."""
    found = False
    for p in paths(path):
        found = _remove(p) | _remove(p + TMP) | found
    return found
