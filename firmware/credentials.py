# Device passwords: the factory record, the owner's record, PBKDF2 checks and login throttling.
#
# The factory record (/factory/password.json, read-only) holds the salted PBKDF2-HMAC-SHA256
# hash of the password printed on this device's label; it is unique per device. Once the
# owner changes the password, an owner record in the data filesystem takes precedence;
# factory_reset() removes it, so the device falls back to its *own* label password, never
# to a shared default (ETSI TS 103 645 provision 4.1-1). Records and the failure counters
# are replaced by write-temp-then-rename. littlefs can roll a directory back past both copies
# of the owner record after one flipped bit, so the fact "an owner password is in force" is
# also kept outside it, in the raw `marks` region (marks.py): odd parity = set. A missing
# record with the mark odd is RECORD_LOST, never the label password in silence; a record with
# the mark even (a rollback that brought back a record a factory reset removed) is stale: the
# label password applies. A mark never written yet (a device from before it) is written for
# the record that exists (settle). Numbers and
# rationale: docs/provisioning.md; the login throttle (per address, per device, per account,
# physical presence): throttle.py.
import binascii
import hashlib
import os

from micropython import const

import store
from sealed import equal
from throttle import DELAYS, LOCKOUT_AFTER, LOCKOUT_S, Throttle, delay_for  # noqa: F401

ALG = "pbkdf2-sha256"
MIN_LEN = const(8)  # characters (NIST SP 800-63B: at least 8 for a chosen secret)
MAX_LEN = const(128)  # characters; at least 64 must be allowed, bounded so a check stays cheap
_MAX_BYTES = const(512)  # MAX_LEN characters of UTF-8 can not exceed this
_SALT_LEN = const(16)
_BLOCK = const(64)  # SHA-256 block size
_DIGEST = const(32)
DEFAULT_ITERATIONS = const(10000)
_MAX_ITERATIONS = const(10000000)  # a record asking for more is refused, not computed


class CredentialError(Exception):
    """A refused request; `code` is one of TOO_SHORT, TOO_LONG, BLOCKLISTED, WRONG_PASSWORD,
    THROTTLED, BAD_RECORD, RECORD_LOST (the owner's record is unreadable: a factory reset
    brings the label password back). For THROTTLED `retry_after` gives the seconds to wait."""

    def __init__(self, code, retry_after=0):
        super().__init__(code)
        self.code = code
        self.retry_after = retry_after


def pbkdf2_sha256(password, salt, iterations):
    """PBKDF2-HMAC-SHA256 (RFC 8018), one 32-byte block. HMAC is done by hand because the
    port has no hmac module and no hash.copy(): each iteration hashes ipad||U and then
    opad||inner, 96 bytes each, through two buffers made once."""
    if len(password) > _BLOCK:
        password = hashlib.sha256(password).digest()
    inner = bytearray(_BLOCK + _DIGEST)  # (key ^ ipad) || U
    outer = bytearray(_BLOCK + _DIGEST)  # (key ^ opad) || H(inner)
    n = len(password)
    for i in range(_BLOCK):
        k = password[i] if i < n else 0
        inner[i] = k ^ 0x36
        outer[i] = k ^ 0x5C
    h = hashlib.sha256(memoryview(inner)[:_BLOCK])
    h.update(salt)
    h.update(b"\x00\x00\x00\x01")
    outer[_BLOCK:] = h.digest()
    u = hashlib.sha256(outer).digest()
    # The running XOR of the U blocks as one 256-bit integer: a single C-level operation per
    # iteration, faster than a byte loop (even in viper) and with no native code to ship.
    acc = int.from_bytes(u, "big")
    sha = hashlib.sha256
    from_bytes = int.from_bytes
    for _ in range(iterations - 1):
        inner[_BLOCK:] = u
        outer[_BLOCK:] = sha(inner).digest()
        u = sha(outer).digest()
        acc ^= from_bytes(u, "big")
    return acc.to_bytes(_DIGEST, "big")


def _utf8(password):
    return password.encode() if isinstance(password, str) else bytes(password)


def make_record(password, iterations=DEFAULT_ITERATIONS):
    """A password record {alg, iterations, salt, hash} with a fresh random salt."""
    salt = os.urandom(_SALT_LEN)
    digest = pbkdf2_sha256(_utf8(password), salt, iterations)
    return {"alg": ALG, "iterations": iterations, "salt": _hex(salt), "hash": _hex(digest)}


def _hex(b):
    return binascii.hexlify(b).decode()


def check_record(record, password):
    """True if `password` matches the record."""
    pw = _utf8(password)
    if len(pw) > _MAX_BYTES:
        return False
    try:
        if record["alg"] != ALG:
            raise CredentialError("BAD_RECORD")
        salt = binascii.unhexlify(record["salt"])
        want = binascii.unhexlify(record["hash"])
        n = int(record["iterations"])
    except (KeyError, ValueError, TypeError):
        raise CredentialError("BAD_RECORD")
    if not 0 < n <= _MAX_ITERATIONS or len(want) != _DIGEST:
        raise CredentialError("BAD_RECORD")
    return equal(pbkdf2_sha256(pw, salt, n), want)


def _read_json(path):
    try:
        return store.read(path)  # sealed under the data root (sealed.py)
    except OSError:
        return None
    except ValueError:
        raise CredentialError("BAD_RECORD")


class Credentials:
    """The device's login password.

    factory_path: the factory record (read-only); owner_path: the owner's record, e.g.
    /data/auth/password.json; state_path: the failure counters (default: beside the owner
    record); blocklist_path: common passwords, one per line, lower case; marks: a
    marks.Marks over the board's `marks` region (hal.marks()), whose odd parity says an owner
    password is in force (None: no such region, the record alone decides; the app always
    passes one). Time is passed in (`now`, seconds) so the owner of the clock decides, and
    tests are deterministic.
    """

    def __init__(self, factory_path, owner_path, blocklist_path=None, state_path=None,
                 iterations=None, marks=None):
        self.factory_path = factory_path
        self.owner_path = owner_path
        self.blocklist_path = blocklist_path
        self.state_path = state_path or owner_path.rsplit("/", 1)[0] + "/throttle.json"
        self._iterations = iterations
        self.throttle = Throttle(self.state_path)
        self.marks = marks
        self._known = False  # the mark's value is read once (_mark), then kept with each set
        self._value = None
        self.listeners = []  # fn(throttled) on every refused login (the cloud link's events)

    # --- records ---------------------------------------------------------------------

    def _mark(self):
        # The mark outside littlefs: 1 an owner password was set and not factory-reset since,
        # 0 it was reset, None never written (no region, or a device from before the mark).
        # Only this object writes it while the app runs, and one flipped bit does not change
        # what it says: it is scanned once, not at every login.
        if self.marks is None:
            return None
        if not self._known:
            self._value, self._known = self.marks.value(), True
        return self._value

    def _set_mark(self, parity):
        wrote = self.marks.set(parity)
        self._value, self._known = parity, True
        return wrote

    def _owner(self):
        # (the owner record in force or None, the mark): raises RECORD_LOST when an owner
        # password is in force but no copy of its record is readable.
        rec, status = store.load_record(self.owner_path)
        if status == store.LOST:
            raise CredentialError("RECORD_LOST")  # never the label password in silence
        mark = self._mark()
        if rec is None:
            if mark == 1:  # both copies gone (a littlefs rollback): still lost
                raise CredentialError("RECORD_LOST")
        elif mark == 0:
            rec = None  # stale: a reset removed it (or a change was cut before its mark)
        return rec, mark

    def _record(self):
        rec = self._owner()[0]
        if rec is None:
            rec = _read_json(self.factory_path)
        if rec is None:
            raise CredentialError("BAD_RECORD")  # no factory record: not provisioned
        return rec

    def owner_set(self):
        """True once the owner has replaced the factory password (also when that record is
        lost: the mark outside littlefs says so)."""
        try:
            return self._owner()[0] is not None
        except CredentialError:
            return True  # RECORD_LOST: an owner password is in force

    def settle(self):
        """Bring the mark and the record in line (the app calls it at every start): finish
        what a power cut left in the region; a record with no mark written yet (a device from
        before the mark) is marked; a stale record (mark even) is removed. True if anything
        was written."""
        if self.marks is None:
            return False
        self.marks.repair()  # what a power cut left in the region (marks.py)
        self._known = False
        rec, status = store.load_record(self.owner_path)
        if status == store.MISSING:
            return False
        mark = self._mark()
        if mark is None:
            return self._set_mark(1)
        if mark == 0 and rec is not None:
            return store.remove_record(self.owner_path)
        return False

    def verify(self, password):
        """Check `password` against the record in force (no throttling: see login)."""
        return check_record(self._record(), password)

    # --- throttling (throttle.py) ---------------------------------------------------

    @property
    def failures(self):
        """Consecutive failed checks of the account, from every address."""
        return self.throttle.consecutive

    def next_attempt_in(self, now, client=None):
        """Seconds (whole, rounded up) until `client` may try a login; 0 means now."""
        return self.throttle.wait(client, now)

    def presence(self, now):
        """The owner proved physical presence (the button): see throttle.py."""
        self.throttle.open_presence(now)

    def _gate(self, password, now, client):
        wait = self.throttle.admit(client, now)
        if wait:
            raise CredentialError("THROTTLED", wait)
        if self.verify(password):
            self.throttle.succeeded(client)
            return True
        self.throttle.failed(client, now)
        return False

    def login(self, password, now, client=None):
        """A throttled login from address `client`: True or False, or CredentialError
        THROTTLED while that address may not try (such a try is neither checked nor
        counted). Every refused login is told to the listeners."""
        try:
            ok = self._gate(password, now, client)
        except CredentialError as e:
            if e.code == "THROTTLED":
                self._refused(True)
            raise
        if not ok:
            self._refused(False)
        return ok

    def _refused(self, throttled):
        for fn in self.listeners:
            fn(throttled)

    # --- owner changes ---------------------------------------------------------------

    def check_new(self, new):
        """Raise CredentialError if `new` may not become the password."""
        if isinstance(new, (bytes, bytearray)):
            new = new.decode()
        if len(new) < MIN_LEN:
            raise CredentialError("TOO_SHORT")
        if len(new) > MAX_LEN:
            raise CredentialError("TOO_LONG")
        if self.blocked(new):
            raise CredentialError("BLOCKLISTED")

    def blocked(self, candidate):
        """True if the blocklist holds `candidate` (case-insensitive). Scans the file line
        by line: it is never loaded into RAM whole."""
        if not self.blocklist_path:
            return False
        want = candidate.lower()
        n = len(want)
        with open(self.blocklist_path) as f:
            for line in f:
                if len(line) >= n and line[:n] == want and line[n:].strip() == "" \
                        and line[0] != "#":
                    return True
        return False

    def change(self, old, new, now, client=None):
        """Replace the password: `old` must be the one in force (a throttled attempt from
        `client`). Raises CredentialError; nothing is stored unless every check passed."""
        self.check_new(new)
        if not self._gate(old, now, client):
            raise CredentialError("WRONG_PASSWORD")
        n = self._iterations or int(self._record().get("iterations", DEFAULT_ITERATIONS))
        store.save_record(self.owner_path, make_record(new, n))
        if self.marks is not None:
            self._set_mark(1)  # after the record: a cut between them is settled later

    def factory_reset(self):
        """Forget the owner's password and the failure counters: the device's own factory
        password (the one on its label) applies again."""
        removed = store.remove_record(self.owner_path)
        if self.marks is not None:
            # After the record: a cut between them leaves RECORD_LOST, which asks for this
            # reset again (with physical presence) and then completes it.
            self._set_mark(0)
        self.throttle.clear()
        return removed
