# Records at rest, encrypted and authenticated with this device's own key (ETSI 4.4-1), and
# the device's one constant-time compare. Frozen with the boot stage: alert-only mode opens
# the sealed Wi-Fi settings (station.py), and the app seals its records through store.py.
#
# The factory record holds 32 random bytes made at provisioning (/factory/secret.bin; on a
# production board the factory partition is covered by flash encryption). Two keys are derived
# from it, one to encrypt (AES-256-CBC, a fresh random IV per write, PKCS#7 padding) and one
# to authenticate (HMAC-SHA256 over the format byte, the record's path, the IV and the
# ciphertext: encrypt-then-MAC). A record copied to another path, or to another device,
# or with one flipped bit, fails the MAC and is refused before anything is decrypted.
# store.py seals the records in DIRS of the data root once the app has called store.use().
# The port has cryptolib (ECB and CBC, no CTR) and hashlib.sha256, but no hmac module.
import hashlib
import os

import cryptolib
from micropython import const

MAGIC = b"\xa5S1"  # not "{": a sealed record never parses as JSON by mistake
_IV = const(16)
_TAG = const(32)
_BLOCK = const(64)
_CBC = const(2)
SECRET_LEN = const(32)
_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyz"  # 32 symbols: 5 bits each, no 0/o, 1/l
# The directories of the data root whose records are sealed: settings, schedule and Wi-Fi
# settings (app), the owner's password record and login throttle (auth), personal data,
# consents and the cloud link's queues (privacy). Not the slots (signed code, read by the boot
# stage) nor the deletion marker.
DIRS = ("app", "auth", "privacy")


class _Hmac:
    """HMAC-SHA256 with a fixed key: the padded key blocks are made once."""

    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        self._i = bytes((key[i] if i < len(key) else 0) ^ 0x36 for i in range(_BLOCK))
        self._o = bytes((key[i] if i < len(key) else 0) ^ 0x5C for i in range(_BLOCK))

    def digest(self, *parts):
        h = hashlib.sha256(self._i)
        for p in parts:
            h.update(p)
        return hashlib.sha256(self._o + h.digest()).digest()


def hmac_sha256(key, *parts):
    return _Hmac(key).digest(*parts)


def equal(a, b):
    """Compare two secrets (bytes, or str: compared as UTF-8) in time that depends only on
    their length: the one constant-time compare of the device (MACs, password hashes, CSRF
    tokens)."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0


def derive(secret, label):
    """A 32-byte key for one purpose (`label`, bytes) from the device secret."""
    return hmac_sha256(secret, b"iot-secure-firmware/" + label)


def ap_passphrase(secret, n=16):
    """The set-up access point's WPA2 passphrase (printed on the label): `n` symbols of 5 bits
    from the device secret. The host computes the same (host_tools/provision.py)."""
    d = derive(secret, b"setup-ap")
    acc = int.from_bytes(d, "big")
    out = []
    for _ in range(n):
        out.append(_ALPHABET[acc & 31])
        acc >>= 5
    return "".join(out)


class Sealer:
    """Seals and opens records under `root` (e.g. "/data") with keys from `secret`."""

    def __init__(self, secret, root, dirs=DIRS):
        if len(secret) != SECRET_LEN:
            raise ValueError("device secret must be %d bytes" % SECRET_LEN)
        self._enc = derive(secret, b"seal/aes")
        self._mac = _Hmac(derive(secret, b"seal/mac"))
        self.root = root.rstrip("/") + "/"
        self.dirs = tuple(self.root + d + "/" for d in dirs)

    def covers(self, path):
        """True for a record in one of the sealed directories."""
        for d in self.dirs:
            if path.startswith(d):
                return True
        return False

    def seal(self, path, data):
        """The sealed bytes of `data` (bytes or str) for the record at `path`."""
        if isinstance(data, str):
            data = data.encode()
        pad = 16 - len(data) % 16
        iv = os.urandom(_IV)
        ct = cryptolib.aes(self._enc, _CBC, iv).encrypt(data + bytes((pad,)) * pad)
        tag = self._mac.digest(MAGIC, path.encode(), iv, ct)
        return MAGIC + iv + ct + tag

    def open(self, path, blob):
        """The plaintext bytes of a sealed record, or ValueError (never partial data)."""
        n = len(blob) - len(MAGIC) - _IV - _TAG
        if n <= 0 or n % 16 or blob[:len(MAGIC)] != MAGIC:
            raise ValueError("not a sealed record")
        mv = memoryview(blob)  # views, no copies: a small heap stays in large pieces
        iv = mv[len(MAGIC):len(MAGIC) + _IV]
        ct = mv[len(MAGIC) + _IV:-_TAG]
        if not equal(self._mac.digest(MAGIC, path.encode(), iv, ct), mv[-_TAG:]):
            raise ValueError("sealed record fails authentication")
        pt = cryptolib.aes(self._enc, _CBC, iv).decrypt(ct)
        pad = pt[-1]
        if not 1 <= pad <= 16:
            raise ValueError("sealed record has bad padding")
        return pt[:-pad]

    def read(self, path):
        """Read and open the record at `path` (OSError when missing, ValueError when bad)."""
        # Exactly the file's size: read() without a size would start with a 2 KiB buffer.
        blob = bytearray(os.stat(path)[6])
        with open(path, "rb") as f:
            if f.readinto(blob) != len(blob):
                raise ValueError("sealed record changed while read")
        return self.open(path, blob)


def read_secret(factory):
    """The device secret from the factory record, or None (provisioned before it existed)."""
    try:
        with open(factory + "/secret.bin", "rb") as f:
            s = f.read()
    except OSError:
        return None
    return s if len(s) == SECRET_LEN else None


def from_factory(factory, root):
    """A Sealer for the data under `root`, or None when the factory record has no secret."""
    s = read_secret(factory)
    return Sealer(s, root) if s else None
