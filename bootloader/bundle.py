# Signed update bundles: bounded parsing and authentication of header, certificate and manifest.
# Format: docs/FORMAT.md. Nothing here trusts a byte until its bound and signature are checked.
import hashlib
import json
import struct

import micropython
from micropython import const

import verdicts

HEADER_LEN = const(64)
MAX_MANIFEST = const(8192)
MAX_CERT = const(160)
SIG_LEN = const(64)
MAX_PREFIX = const(64 + 8192 + 160 + 64)  # header, manifest, certificate, signature
CERT_FIXED = const(26)
ALG_ED25519 = const(1)
ALG_P256 = const(2)
KIND_APP = const(0)
KIND_FIRMWARE = const(1)
MAX_FILES = const(64)
MAX_PATH = const(96)
MAX_NOTES = const(1024)
_KEY_LEN = {ALG_ED25519: 32, ALG_P256: 65}
KINDS = ("app", "firmware")
MANIFEST_KEYS = ("schema", "kind", "product", "boards", "version", "security_version",
                 "created", "expires", "files", "notes", "security_fix")
OPTIONAL_KEYS = ("sbom_sha256",)  # SHA-256 (hex) of the bundle's SBOM, bound by the signature


def _charset(chars):
    # bytearray(256): 1 for the bytes of `chars` (any other byte, e.g. of UTF-8, 0)
    ok = bytearray(256)
    for c in chars:
        ok[ord(c)] = 1
    return ok


_SEG_OK = _charset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_PRODUCT_OK = _charset("abcdefghijklmnopqrstuvwxyz0123456789-")
_HEX_OK = _charset("0123456789abcdef")


@micropython.viper
def _only(b: ptr8, n: int, ok: ptr8) -> bool:
    # every one of the n bytes at b is allowed by `ok` (_charset): a table lookup per byte,
    # without an object per character (every boot checks the manifest)
    i = 0
    while i < n:
        if not ok[b[i]]:
            return False
        i += 1
    return True


def _text_ok(text, ok, lo, hi):
    # a str of lo..hi characters, each allowed by `ok`
    if not isinstance(text, str) or not lo <= len(text) <= hi:
        return False
    b = text.encode()
    return _only(b, len(b), ok)


class Reject(Exception):
    """A bundle or slot broke a rule; `verdict` is one of the names of verdicts.py."""

    def __init__(self, verdict, detail=""):
        super().__init__(verdict, detail)
        self.verdict = verdict
        self.detail = detail

    def __str__(self):
        return self.verdict + (": " + self.detail if self.detail else "")


class Header:
    __slots__ = ("raw", "kind", "alg", "manifest_len", "cert_len", "sig_len", "payload_len",
                 "manifest_sha256")


class Cert:
    __slots__ = ("raw", "key_alg", "root_alg", "serial", "not_after", "root_id", "key",
                 "signed_len")


class Verified:
    """An authenticated bundle prefix: header, certificate, manifest (dict) and the raw bytes."""

    __slots__ = ("header", "cert", "manifest", "prefix", "file_count")

    def __init__(self, header, cert, manifest, prefix):
        self.header = header
        self.cert = cert
        self.manifest = manifest
        self.prefix = prefix
        self.file_count = len(manifest["files"])

    def compact(self):
        """Drop what is only needed while verifying (the raw prefix, the file list): the
        boot stage keeps the summary for the lifetime of the app, in a small heap."""
        self.prefix = None
        self.manifest.pop("files", None)


def parse_header(raw):
    if len(raw) < HEADER_LEN:
        raise Reject(verdicts.TRUNCATED, "header is %d of %d bytes" % (len(raw), HEADER_LEN))
    if bytes(raw[0:4]) != b"IOTB":
        raise Reject(verdicts.BAD_MAGIC, "not an update bundle")
    fmt, kind, alg, reserved, mlen, clen, slen, plen = struct.unpack_from("<BBBBIHHI", raw, 4)
    if fmt != 1:
        raise Reject(verdicts.BAD_FORMAT, "bundle format %d is not supported" % fmt)
    if kind > KIND_FIRMWARE or alg not in _KEY_LEN or reserved or any(raw[20:32]):
        raise Reject(verdicts.BAD_FORMAT, "unknown kind, algorithm or non-zero reserved bytes")
    if not 1 <= mlen <= MAX_MANIFEST:
        raise Reject(verdicts.BAD_LENGTH,
                     "manifest length %d outside 1..%d" % (mlen, MAX_MANIFEST))
    if not CERT_FIXED < clen <= MAX_CERT:
        raise Reject(verdicts.BAD_LENGTH, "certificate length %d outside %d..%d"
                     % (clen, CERT_FIXED + 1, MAX_CERT))
    if slen != SIG_LEN:
        raise Reject(verdicts.BAD_LENGTH, "signature length %d, expected %d" % (slen, SIG_LEN))
    h = Header()
    h.raw = bytes(raw[:HEADER_LEN])
    h.kind, h.alg, h.manifest_len = kind, alg, mlen
    h.cert_len, h.sig_len, h.payload_len = clen, slen, plen
    h.manifest_sha256 = h.raw[32:64]
    return h


def parse_cert(raw):
    if len(raw) < CERT_FIXED or bytes(raw[0:4]) != b"IOTK":
        raise Reject(verdicts.BAD_CERT, "not an update-key certificate")
    ver, key_alg, root_alg, reserved, serial, not_after = struct.unpack_from("<BBBBII", raw, 4)
    (key_len,) = struct.unpack_from("<H", raw, 24)
    if ver != 1 or reserved or key_alg not in _KEY_LEN or root_alg not in _KEY_LEN:
        raise Reject(verdicts.BAD_CERT, "unknown certificate version or algorithm")
    if key_len != _KEY_LEN[key_alg] or len(raw) != CERT_FIXED + key_len + SIG_LEN:
        raise Reject(verdicts.BAD_CERT, "certificate key or length does not match its algorithm")
    if serial < 1:
        raise Reject(verdicts.BAD_CERT, "certificate serial must be >= 1")
    c = Cert()
    c.raw = bytes(raw)
    c.key_alg, c.root_alg, c.serial, c.not_after = key_alg, root_alg, serial, not_after
    c.root_id = c.raw[16:24]
    c.key = c.raw[CERT_FIXED:CERT_FIXED + key_len]
    c.signed_len = CERT_FIXED + key_len
    return c


def signature_ok(alg, key, msg, sig):
    """Dispatch to the pure-MicroPython verifier for `alg`; never raises on bad input."""
    if alg == ALG_ED25519:
        import ed25519
        return ed25519.verify(key, msg, sig)
    if alg == ALG_P256:
        import p256
        return p256.verify(key, msg, sig)
    return False


def root_id(key):
    return hashlib.sha256(key).digest()[:8]


def check_cert(cert, anchors, key_floor, now=0):
    """Authenticate an update-key certificate against the pinned roots and the key floor."""
    for alg, key in anchors:
        if alg == cert.root_alg and root_id(key) == cert.root_id:
            break
    else:
        raise Reject(verdicts.UNKNOWN_ROOT, "certificate is not from a pinned root key")
    signed = memoryview(cert.raw)[:cert.signed_len]
    if not signature_ok(alg, key, signed, cert.raw[cert.signed_len:]):
        raise Reject(verdicts.BAD_CERT_SIGNATURE, "root signature on the update key is invalid")
    if cert.serial < key_floor:
        raise Reject(verdicts.KEY_REVOKED, "update key serial %d is below the floor %d"
                     % (cert.serial, key_floor))
    if now and cert.not_after and now > cert.not_after:
        raise Reject(verdicts.KEY_EXPIRED, "update key expired at %d" % cert.not_after)


def _check_path(path, seen):
    if not isinstance(path, str) or not 0 < len(path) <= MAX_PATH or path in seen:
        return False
    for seg in path.split("/"):
        if not _text_ok(seg, _SEG_OK, 1, 32) or seg[0] == ".":
            return False
    return True


def _is_int(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _version_ok(v):
    parts = v.split(".") if isinstance(v, str) and len(v) <= 17 else ()
    return len(parts) == 3 and all(p.isdigit() and len(p) <= 5 and int(p) <= 65535 for p in parts)


def parse_manifest(raw, header):
    """Decode and validate an authenticated manifest; returns the dict."""
    try:
        m = json.loads(raw)  # a memoryview into the prefix: no copy
    except (ValueError, UnicodeError):
        raise Reject(verdicts.BAD_MANIFEST, "manifest is not UTF-8 JSON")
    if not isinstance(m, dict) or not all(k in m for k in MANIFEST_KEYS) \
            or len(m) - len(MANIFEST_KEYS) != sum(1 for k in OPTIONAL_KEYS if k in m):
        raise Reject(verdicts.BAD_MANIFEST,
                     "manifest keys must be exactly " + ",".join(MANIFEST_KEYS)
                     + " and optionally " + ",".join(OPTIONAL_KEYS))
    if "sbom_sha256" in m and not _text_ok(m["sbom_sha256"], _HEX_OK, 64, 64):
        raise Reject(verdicts.BAD_MANIFEST, "sbom_sha256 must be 64 lowercase hex digits")
    prod = m["product"]
    boards = m["boards"]
    files = m["files"]
    ok = (m["schema"] == 1 and m["kind"] in KINDS and m["kind"] == KINDS[header.kind]
          and _text_ok(prod, _PRODUCT_OK, 1, 32)
          and isinstance(boards, list) and 0 < len(boards) <= 8
          and all(isinstance(b, str) and 0 < len(b) <= 16 for b in boards)
          and _version_ok(m["version"]) and _is_int(m["security_version"], 0, 0x7FFFFFFF)
          and _is_int(m["created"], 0, 0xFFFFFFFF)
          and (m["expires"] is None or _is_int(m["expires"], 0, 0xFFFFFFFF))
          and isinstance(m["notes"], str) and len(m["notes"]) <= MAX_NOTES
          and isinstance(m["security_fix"], bool)
          and isinstance(files, list) and 0 < len(files) <= MAX_FILES)
    if not ok:
        raise Reject(verdicts.BAD_MANIFEST, "a manifest field has the wrong type or range")
    seen = set()
    total = 0
    for i, f in enumerate(files):
        if not (isinstance(f, dict) and len(f) == 3 and "path" in f and "sha256" in f
                and "size" in f  # exactly these keys, without sorting a list per entry
                and _check_path(f["path"], seen) and _is_int(f["size"], 0, 0x7FFFFFFF)
                and isinstance(f["sha256"], str) and len(f["sha256"]) == 64):
            raise Reject(verdicts.BAD_MANIFEST, "bad file entry")
        try:
            # The hex text goes: the entry lives through the whole install, in a small heap.
            files[i] = {"path": f["path"], "size": f["size"], "digest": bytes.fromhex(f["sha256"])}
        except ValueError:
            raise Reject(verdicts.BAD_MANIFEST, "file hash is not hex")
        seen.add(f["path"])
        total += f["size"]
    if total != header.payload_len:
        raise Reject(verdicts.BAD_MANIFEST, "file sizes add up to %d, header says %d"
                     % (total, header.payload_len))
    return m


def check_rules(m, policy):
    """Apply the device's install/boot rules (policy: dict) to an authenticated manifest."""
    if m["kind"] != policy["kind"]:
        raise Reject(verdicts.WRONG_KIND,
                     "bundle is %s, expected %s" % (m["kind"], policy["kind"]))
    if m["product"] != policy["product"]:
        raise Reject(verdicts.WRONG_PRODUCT, "bundle is for product %s" % m["product"])
    if policy["board"] not in m["boards"]:
        raise Reject(verdicts.WRONG_BOARD, "bundle is for %s, this board is %s"
                     % (",".join(m["boards"]), policy["board"]))
    if m["security_version"] < policy["sec_floor"]:
        raise Reject(verdicts.DOWNGRADE, "security version %d is below the floor %d"
                     % (m["security_version"], policy["sec_floor"]))
    now = policy.get("now", 0)
    if now and m["expires"] is not None and now > m["expires"]:
        raise Reject(verdicts.EXPIRED, "bundle expired at %d" % m["expires"])
    if sum(f["size"] for f in m["files"]) > policy["capacity"]:
        raise Reject(verdicts.TOO_LARGE,
                     "payload does not fit the %d-byte slot" % policy["capacity"])


def read_exact(stream, n, what, into=None):
    buf = into if into is not None else bytearray(n)
    mv = memoryview(buf)
    got = 0
    while got < n:
        k = stream.readinto(mv[got:n])
        if not k:
            raise Reject(verdicts.TRUNCATED,
                         "stream ended inside the %s (%d of %d bytes)" % (what, got, n))
        got += k
    return buf


def prefix_len(header):
    return HEADER_LEN + header.manifest_len + header.cert_len + header.sig_len


def read_prefix(stream):
    """The whole signed prefix (header, manifest, certificate, signature) in one buffer."""
    head = read_exact(stream, HEADER_LEN, "header")
    buf = bytearray(prefix_len(parse_header(head)))
    buf[:HEADER_LEN] = head
    read_exact(stream, len(buf) - HEADER_LEN, "signed prefix", memoryview(buf)[HEADER_LEN:])
    return buf


def authenticate(stream, anchors, policy):
    """Read a bundle prefix from `stream` and authenticate it (see authenticate_prefix)."""
    return authenticate_prefix(read_prefix(stream), anchors, policy)


class Prefix:
    """A bundle's signed prefix gathered from bytes pushed in pieces (both installers): the
    header, then as many bytes as it announces. In `space` (a bytearray of MAX_PREFIX) when
    given, so that no allocation is needed late in a long-running app; else in its own."""

    def __init__(self, space=None):
        self._space = space
        self.buf = memoryview(space)[:HEADER_LEN] if space else bytearray(HEADER_LEN)
        self._got = 0

    def take(self, mv):
        """Copy from memoryview `mv` what the prefix still lacks. Returns the rest of `mv` and
        whether the prefix is complete (its length is checked by parse_header first)."""
        n = min(len(self.buf) - self._got, len(mv))
        self.buf[self._got:self._got + n] = mv[:n]
        self._got += n
        if self._got == len(self.buf) == HEADER_LEN:
            h = parse_header(self.buf)
            need = HEADER_LEN + h.manifest_len + h.cert_len + h.sig_len
            if self._space:  # the header is already at its start
                self.buf = memoryview(self._space)[:need]
            else:
                grown = bytearray(need)
                grown[:HEADER_LEN] = self.buf
                self.buf = grown
        return mv[n:], self._got == len(self.buf) > HEADER_LEN


class Fed:
    """The push-fed front every installer shares (app slot directory, ROMFS region, firmware
    partition): feed() the bundle's bytes as they arrive. The signed prefix is gathered first
    (`_pre`, a Prefix); `_begin()` then authenticates it and checks every rule before the first
    write, and each later byte goes to `_take(mv)`, which returns how many it consumed.
    An installer that can resume a download cut by a power loss overrides `present` (bytes
    kept from flash) and sync() (what a resume may keep); the others keep nothing."""

    present = 0

    def sync(self):
        return 0

    def feed(self, data):
        """Consume the next bytes of the bundle (a bytes-like object; may be a memoryview)."""
        mv = memoryview(data)
        while len(mv):
            if self._pre is not None:
                mv, complete = self._pre.take(mv)
                if complete:
                    self._begin()
                continue
            mv = mv[self._take(mv):]
        if self.progress:
            self.progress(self.written)

    def _prefix_done(self):
        if self._pre is not None:
            raise Reject(verdicts.TRUNCATED, "bundle ended inside its signed prefix")


def authenticate_prefix(buf, anchors, policy):
    """Authenticate a complete bundle prefix held in `buf`; returns Verified or raises Reject.

    The update key's certificate and the signature over the header are checked before the
    manifest is parsed, and every rule before the caller reads one payload byte. The parts
    are memoryviews into `buf`: nothing is copied."""
    mv = memoryview(buf)
    header = parse_header(mv[:HEADER_LEN])
    c0 = HEADER_LEN + header.manifest_len
    s0 = c0 + header.cert_len
    if len(buf) != s0 + header.sig_len:
        raise Reject(verdicts.TRUNCATED,
                     "signed prefix is %d of %d bytes" % (len(buf), s0 + header.sig_len))
    manifest_raw = mv[HEADER_LEN:c0]
    if hashlib.sha256(manifest_raw).digest() != header.manifest_sha256:
        raise Reject(verdicts.BAD_MANIFEST_HASH, "manifest does not match the header's SHA-256")
    cert = parse_cert(mv[c0:s0])
    sig = mv[s0:]
    check_cert(cert, anchors, policy["key_floor"], policy.get("now", 0))
    if cert.key_alg != header.alg:
        raise Reject(verdicts.BAD_SIGNATURE, "header algorithm does not match the update key")
    if not signature_ok(cert.key_alg, cert.key, header.raw, sig):
        raise Reject(verdicts.BAD_SIGNATURE, "signature over the header is invalid")
    manifest = parse_manifest(manifest_raw, header)
    check_rules(manifest, policy)
    return Verified(header, cert, manifest, buf)
