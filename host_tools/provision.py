"""Factory provisioning: a unique id, a random per-device password, a key pair and a
CA-signed certificate per device; the factory record (files of the `fctry` partition); the
ledger row; the label. Targets: a simulated board's flash image, a partition image for
esptool, or a board on a serial port (through mpremote). Layout: docs/provisioning.md."""

import contextlib
import functools
import hashlib
import hmac
import json
import math
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from littlefs import LittleFS, LittleFSError

from . import ca as ca_mod
from . import flashimage, keys, label, onboarding
from .errors import DeviceError, UsageError
from .ledger import Ledger
from .serialtarget import DEFAULT_PORT_TIMEOUT, serial_sim, write_port  # noqa: F401 (API)

PRODUCT = "iot-thermostat"
DEFAULT_MODEL = "TH-1"
PARTITION = "fctry"
ALG = "pbkdf2-sha256"
# One check costs ~30 ms on the unix port and ~0.6-1.5 s on an ESP32 (20-50x slower):
# NIST SP 800-63B's floor for PBKDF2, and still a tolerable wait for a login on the device.
DEFAULT_ITERATIONS = 10_000
MIN_ITERATIONS = 1_000
SALT_BYTES = 16
# 31 symbols, none that reads like another (no 0/o, 1/l/i): 16 of them = 79.3 bits.
PASSWORD_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
PASSWORD_GROUPS, GROUP_LEN = 4, 4
# Crockford's base32 (lower case): 12 symbols = 60 random bits, a valid DNS label with prefix.
ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
ID_PREFIX, ID_LEN = "th-", 12
BLOCKLIST = Path(__file__).resolve().parent / "data" / "common-passwords.txt"
FACTORY_FILES = ("anchors.json", "password.json", "device.key.der", "device.crt.der",
                 "ca.crt.der", "secret.bin", "identity.json")  # written in order: identity last


def password_bits():
    """Entropy of a generated password, in bits."""
    return PASSWORD_GROUPS * GROUP_LEN * math.log2(len(PASSWORD_ALPHABET))


@functools.lru_cache(maxsize=4)
def load_blocklist(path=BLOCKLIST):
    """The common-password list as a frozenset (lower case, comments skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read the password blocklist {path}: {e.strerror}") from None
    return frozenset(w.strip().lower() for w in text.splitlines()
                     if w.strip() and not w.startswith("#"))


def generate_password(blocklist=None, choice=secrets.choice):
    """A fresh random password `xxxx-xxxx-xxxx-xxxx` from the OS's CSPRNG. It depends on
    nothing about the device; one that appears in the blocklist is drawn again."""
    blocklist = load_blocklist() if blocklist is None else blocklist
    for _ in range(100):
        pw = "-".join("".join(choice(PASSWORD_ALPHABET) for _ in range(GROUP_LEN))
                      for _ in range(PASSWORD_GROUPS))
        if pw not in blocklist and pw.replace("-", "") not in blocklist:
            return pw
    raise UsageError("the random source keeps producing blocklisted passwords")


def generate_device_id(choice=secrets.choice):
    """A random device id, e.g. th-4k9q2x7mzp3a. Random rather than sequential: it does not
    reveal production numbers, and the password owes it nothing."""
    return ID_PREFIX + "".join(choice(ID_ALPHABET) for _ in range(ID_LEN))


def hash_password(password, iterations=DEFAULT_ITERATIONS, salt=None):
    """The password record the device checks: PBKDF2-HMAC-SHA256, 16-byte random salt."""
    if iterations < 1:
        raise UsageError("iterations must be positive")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return {"alg": ALG, "iterations": iterations, "salt": salt.hex(), "hash": digest.hex()}


def check_password(record, password):
    """Host-side check of a password record (the device does the same in credentials.py)."""
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(record["salt"]),
                                 record["iterations"])
    return hmac.compare_digest(digest, bytes.fromhex(record["hash"]))


@dataclass
class DeviceRecord:
    """One provisioned device. `password` and `files` (which hold the private key) are for
    the label and the device only: `public()` is what may be stored or logged."""

    device_id: str
    product: str
    model: str
    board: str
    station: str
    provisioned: int
    password: str = field(repr=False)
    cert_serial: str = ""
    cert_sha256: str = ""
    files: dict = field(default_factory=dict, repr=False)
    labels: dict = field(default_factory=dict)
    target: str = ""
    replaced: str = ""  # with --force: the id of the device whose record this one replaced
    ap_passphrase: str = field(default="", repr=False)  # the set-up AP's, on the label

    @property
    def setup_url(self):
        return label.setup_url(self.device_id)

    def ledger_row(self):
        return {"device_id": self.device_id, "product": self.product, "model": self.model,
                "board": self.board, "cert_serial": self.cert_serial,
                "cert_sha256": self.cert_sha256, "provisioned": self.provisioned,
                "station": self.station}

    def public(self):
        """Everything but the secrets."""
        doc = {**self.ledger_row(), "setup_url": self.setup_url, "labels": dict(self.labels),
               "target": self.target}
        if self.replaced:
            doc["replaced"] = self.replaced
        return doc

    def for_label(self):
        """What the label printer needs (holds the password)."""
        return {**self.public(), "password": self.password,
                "ap_ssid": onboarding.ap_ssid(self.device_id), "ap_passphrase": self.ap_passphrase}


def parse_cloud(text):
    """`HOST:PORT` (the cloud broker the device connects to) -> {"host", "port"}."""
    host, sep, port = (text or "").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--cloud must be HOST:PORT, got {text!r}")
    return {"host": host.strip("[]"), "port": int(port)}


def make_device(ca, anchors, *, model=DEFAULT_MODEL, board="unix", station=None,
                iterations=DEFAULT_ITERATIONS, now=None, blocklist=None, device_id=None,
                cloud=None):
    """Generate one device's identity and factory record (no I/O, nothing stored).
    `cloud`: the broker the device connects to, {"host", "port", ...} (docs/cloud-link.md)."""
    if iterations < MIN_ITERATIONS:
        raise UsageError(f"at least {MIN_ITERATIONS} PBKDF2 iterations, please")
    now = int(time.time()) if now is None else int(now)
    device_id = device_id or generate_device_id()
    password = generate_password(blocklist)
    secret = os.urandom(onboarding.SECRET_BYTES)  # seals the data at rest; the AP passphrase
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca_mod.issue_device(ca, device_id, key.public_key())
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    station = station or default_station()
    identity = {"device_id": device_id, "product": PRODUCT, "model": model, "board": board,
                "provisioned": now, "station": station}
    if cloud:
        if not isinstance(cloud, dict) or not cloud.get("host") or not cloud.get("port"):
            raise UsageError("cloud needs a host and a port")
        identity["cloud"] = dict(cloud)
    files = {
        "anchors.json": _json(anchors),
        "password.json": _json(hash_password(password, iterations)),
        "device.key.der": key.private_bytes(serialization.Encoding.DER,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()),
        "device.crt.der": cert_der,
        "ca.crt.der": ca.cert_der,
        "secret.bin": secret,
        "identity.json": _json(identity),
    }
    return DeviceRecord(device_id, PRODUCT, model, board, station, now, password,
                        format(cert.serial_number, "x"), hashlib.sha256(cert_der).hexdigest(),
                        files, ap_passphrase=onboarding.ap_passphrase(secret))


def _json(doc):
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def default_station():
    return socket.gethostname()[:64] or "station"


# --- targets -----------------------------------------------------------------------------

def partition_image(files, board="unix"):
    """The bytes of a complete `fctry` partition (littlefs, the board's geometry, erased
    space 0xFF) holding `files`: what esptool writes at the partition's offset."""
    fs = LittleFS(mount=False, **flashimage.lfs_geometry(PARTITION, board))
    fs.format()
    fs.mount()
    try:
        for name in FACTORY_FILES if set(files) == set(FACTORY_FILES) else sorted(files):
            with fs.open(name, "wb") as f:
                f.write(files[name])
    except LittleFSError as e:
        raise UsageError(f"the factory record does not fit partition {PARTITION}: {e}") from None
    fs.unmount()
    return bytes(fs.context.buffer)


def _write_secret(path, data, force=False):
    path = Path(path)
    if path.exists() and not force:
        raise UsageError(f"{path} exists; refusing to overwrite it")
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:  # no stray copy of the private key
        tmp.unlink(missing_ok=True)
        raise


def image_path(template, device_id):
    """The image file for `device_id`: `template` with {device_id} replaced."""
    try:
        return Path(str(template).format(device_id=device_id))
    except (KeyError, IndexError, ValueError) as e:
        raise UsageError(f"--image {template}: only {{device_id}} may be replaced ({e})") from None


def write_image(record, path, force=False):
    """Write the record as a partition image file (0600: it holds the private key)."""
    path = image_path(path, record.device_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_secret(path, partition_image(record.files, record.board), force)
    except OSError as e:
        raise UsageError(f"cannot write the image {path}: {e.strerror or e}") from None
    part = flashimage.find_partition(PARTITION, record.board)
    record.target = f"image:{path}@0x{part.offset:x}"
    return path


def provisioned_id(sim=None, image=None, board="unix"):
    """The device id of the factory record already on a target (the simulated board in
    `sim`, or the partition image file `image`), or None if it holds none readable."""
    try:
        if sim is not None:
            flash = Path(sim) / flashimage.image_name("unix")
            if not flash.exists() or flashimage.is_blank(flash, PARTITION):
                return None
            raw = flashimage.read_file(flash, PARTITION, "identity.json")
        elif image is not None and Path(image).is_file():
            fs = LittleFS(mount=False, **flashimage.lfs_geometry(PARTITION, board))
            fs.context.buffer[:] = Path(image).read_bytes()[:len(fs.context.buffer)]
            fs.mount()
            with fs.open("identity.json", "rb") as f:
                raw = f.read()
        else:
            return None
        return json.loads(raw)["device_id"]
    except (OSError, ValueError, KeyError, TypeError, LittleFSError, DeviceError):
        return None


def write_sim(record, d, force=False):
    """Write the record into the `fctry` partition of the simulated board in `d`
    (`d`/flash.bin, created blank if missing). A partition that already holds a record is
    refused unless `force` (then it is formatted first)."""
    if record.board != "unix":
        raise UsageError(f"a simulated board is board 'unix', not {record.board!r}")
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    image = d / flashimage.image_name("unix")
    if not image.exists():
        flashimage.create_blank(image, board="unix")
    os.chmod(image, 0o600)  # it holds the device's private key from now on
    if not flashimage.is_blank(image, PARTITION):
        try:
            present = flashimage.list_files(image, PARTITION)
        except DeviceError:
            if not force:
                raise
            present = None
        if present is None or "identity.json" in present:
            if not force:
                raise DeviceError(f"{image} is already provisioned (use force to replace it)")
        flashimage.format_partition(image, PARTITION)
    flashimage.write_files(image, PARTITION, {n: record.files[n] for n in FACTORY_FILES})
    record.target = f"sim:{d}"
    return image


# --- the factory line --------------------------------------------------------------------

def provision(keys_dir, count=1, *, model=DEFAULT_MODEL, board="unix", station=None,
              iterations=DEFAULT_ITERATIONS, ledger=None, sim=None, image=None, port=None,
              labels=None, force=False, soft_reset=False, key_floor=1, progress=None,
              cloud=None, timeout=DEFAULT_PORT_TIMEOUT, waiting=None):
    """Provision `count` devices with the CA and trust anchors in `keys_dir`; returns their
    DeviceRecords. With no target (sim, image, port) the records are only generated and
    entered in the ledger (the caller writes them). Per device: ledger row (uncommitted),
    labels, target write, commit; a failure (an exception, Ctrl-C, or SIGTERM turned into
    SystemExit) rolls back the row and removes the labels. With `force`, a record already on
    the target is replaced: its ledger row gets `replaced_by` and its labels are removed.
    `timeout` bounds each wait for a board on `port`; `waiting(text)` says what is awaited."""
    if count < 1:
        raise UsageError("count must be at least 1")
    targets = [t for t in (sim, image, port) if t is not None]
    if len(targets) > 1:
        raise UsageError("choose one target: sim, image or port")
    if (sim is not None or port is not None) and count != 1:
        raise UsageError("a simulated board or a serial port takes one device at a time")
    if image is not None and count > 1 and "{device_id}" not in str(image):
        raise UsageError("for several devices the image path needs a {device_id} placeholder")
    if image is not None:
        image_path(image, "th-check")  # a bad placeholder fails before anything is made
    flashimage.board_config(board)  # an unknown board fails here, before anything is made
    ca = ca_mod.load(keys_dir)
    anchors = keys.anchors(keys_dir, key_floor)
    blocklist = load_blocklist()
    station = station or default_station()
    db = ledger if isinstance(ledger, Ledger) else \
        Ledger.open(ledger or Path(keys_dir) / "ledger.sqlite")
    records = []
    try:
        for i in range(count):
            rec = _one(db, ca, anchors, blocklist, model, board, station, iterations, labels,
                       sim, image, port, force, soft_reset, cloud, timeout, waiting)
            records.append(rec)
            if progress:
                progress(i + 1, count, rec)
    finally:
        if not isinstance(ledger, Ledger):
            db.close()
    return records


def _one(db, ca, anchors, blocklist, model, board, station, iterations, labels, sim, image,
         port, force, soft_reset, cloud=None, timeout=DEFAULT_PORT_TIMEOUT, waiting=None):
    for _ in range(5):  # 60 random bits: a clash is all but impossible, but cheap to handle
        device_id = generate_device_id()
        if not db.has(device_id):
            break
    else:
        raise UsageError("could not find an unused device id")
    rec = make_device(ca, anchors, model=model, board=board, station=station,
                      iterations=iterations, blocklist=blocklist, device_id=device_id,
                      cloud=cloud)
    db.insert(rec.ledger_row())
    old = None
    if force and (sim is not None or image is not None):
        old = provisioned_id(sim=sim, image=None if image is None else
                             image_path(image, device_id), board=board)
    # an image file this device creates goes again if the device does not make it
    new_image = image_path(image, device_id) if image is not None else None
    if new_image is not None and new_image.exists():
        new_image = None
    try:
        if labels is not None:
            rec.labels = label.write(rec.for_label(), labels)
        if sim is not None:
            write_sim(rec, sim, force)
        elif image is not None:
            write_image(rec, image, force)
        elif port is not None:
            write_port(rec, port, force, soft_reset, timeout=timeout, waiting=waiting)
        if old and old != device_id:
            db.mark_replaced(old, device_id)
            rec.replaced = old
        db.commit()
    except BaseException:
        db.rollback()
        for path in rec.labels.values():
            Path(path).unlink(missing_ok=True)
        if new_image is not None:
            with contextlib.suppress(OSError):  # e.g. its folder could not be made
                new_image.unlink()
        raise
    if rec.replaced and labels is not None:  # the old password no longer opens anything
        for ext in ("png", "pdf"):
            (Path(labels) / f"{rec.replaced}.{ext}").unlink(missing_ok=True)
    return rec
