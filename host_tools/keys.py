"""Signing keys: the offline root key, update keys and their root-signed certificates (IOTK)."""

import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                             encode_dss_signature)

from .errors import KeyFileError, UsageError

ALGS = {"ed25519": 1, "ecdsa-p256": 2}
ALG_NAMES = {v: k for k, v in ALGS.items()}
KEY_LEN = {1: 32, 2: 65}
CERT_FIXED = 26
SIG_LEN = 64
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
INFO = "keys.json"
DEFAULT_VALIDITY_DAYS = 5 * 365


def generate(alg):
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise UsageError(f"unknown algorithm {alg!r} (choose ed25519 or ecdsa-p256)")


def alg_of(key):
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) \
            and isinstance(key.curve, ec.SECP256R1):
        return "ecdsa-p256"
    raise KeyFileError("unsupported key type (need Ed25519 or EC P-256)")


def raw_public(key):
    """The public key in the device's encoding: 32 bytes (Ed25519) or 65 uncompressed (P-256)."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    if alg_of(pub) == "ed25519":
        return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return pub.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)


def load_raw_public(alg_id, raw):
    if alg_id == 1:
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def sign(key, message):
    """Sign in the device's format: Ed25519 R||S, or ECDSA P-256/SHA-256 as r||s (low-S)."""
    if alg_of(key) == "ed25519":
        return key.sign(message)
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    if s > P256_ORDER // 2:  # canonical low-S form; the device accepts either
        s = P256_ORDER - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify(alg_id, raw_pub, message, sig):
    """Host-side check of a device-format signature (used for diagnostics, not as the verdict)."""
    try:
        pub = load_raw_public(alg_id, raw_pub)
        if alg_id == 1:
            pub.verify(sig, message)
        else:
            if len(sig) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                       int.from_bytes(sig[32:], "big"))
            pub.verify(der, message, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False


def root_id(raw_pub):
    return hashlib.sha256(raw_pub).digest()[:8]


def make_cert(root_key, update_pub_raw, key_alg, serial, not_after):
    """An IOTK update-key certificate signed by the root key (layout in docs/FORMAT.md)."""
    root_raw = raw_public(root_key)
    body = b"IOTK" + struct.pack("<BBBBII", 1, ALGS[key_alg], ALGS[alg_of(root_key)], 0,
                                 serial, not_after)
    body += root_id(root_raw) + struct.pack("<H", len(update_pub_raw)) + update_pub_raw
    return body + sign(root_key, body)


@dataclass
class CertInfo:
    key_alg: str
    root_alg: str
    serial: int
    not_after: int
    root_id: bytes
    key: bytes
    signature: bytes
    signed: bytes


def parse_cert(raw):
    if len(raw) < CERT_FIXED or raw[:4] != b"IOTK":
        raise KeyFileError("not an update-key certificate (bad magic)")
    ver, key_alg, root_alg, _res, serial, not_after = struct.unpack_from("<BBBBII", raw, 4)
    (klen,) = struct.unpack_from("<H", raw, 24)
    if ver != 1 or key_alg not in KEY_LEN or root_alg not in KEY_LEN or klen != KEY_LEN[key_alg] \
            or len(raw) != CERT_FIXED + klen + SIG_LEN:
        raise KeyFileError("malformed update-key certificate")
    end = CERT_FIXED + klen
    return CertInfo(ALG_NAMES[key_alg], ALG_NAMES[root_alg], serial, not_after, raw[16:24],
                    raw[CERT_FIXED:end], raw[end:], raw[:end])


# --- the key directory -------------------------------------------------------------------

def _write_private(path, key):
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _write_new(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def load_private(path):
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read private key {path}: {e.strerror}") from None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{path} is not a usable private key: {e}") from None


def _update_name(serial):
    return f"update-{serial:04d}"


def init(directory, alg="ed25519", update_alg=None, validity_days=DEFAULT_VALIDITY_DAYS):
    """Create the root key, the first update key (serial 1) and its certificate in `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if (d / INFO).exists() or (d / "root.key").exists():
        raise KeyFileError(f"{d} already holds keys; refusing to overwrite them")
    update_alg = update_alg or alg
    root = generate(alg)
    _write_private(d / "root.key", root)
    _write_new(d / "root.pub", raw_public(root).hex() + "\n")
    info = {"root_alg": alg, "root_public": raw_public(root).hex(), "serial": 0,
            "update_alg": update_alg, "validity_days": validity_days}
    _write_new(d / INFO, json.dumps(info, indent=2) + "\n")
    return rotate(d, update_alg)


def load_info(directory):
    try:
        return json.loads((Path(directory) / INFO).read_text())
    except FileNotFoundError:
        raise KeyFileError(f"{directory} holds no keys (run `iotctl keys init --dir "
                        f"{directory}`)") from None
    except (OSError, ValueError) as e:
        raise KeyFileError(f"cannot read {directory}/{INFO}: {e}") from None


def rotate(directory, alg=None):
    """Create the next update key (serial + 1), certified by the root key. Returns its serial."""
    d = Path(directory)
    info = load_info(d)
    root = load_private(d / "root.key")
    alg = alg or info["update_alg"]
    serial = info["serial"] + 1
    name = _update_name(serial)
    if (d / f"{name}.key").exists():
        raise KeyFileError(f"{d / name}.key already exists; refusing to overwrite it")
    key = generate(alg)
    not_after = int(time.time()) + info.get("validity_days", DEFAULT_VALIDITY_DAYS) * 86400
    cert = make_cert(root, raw_public(key), alg, serial, not_after)
    _write_private(d / f"{name}.key", key)
    _write_new(d / f"{name}.cert", cert)
    info["serial"] = serial
    tmp = d / (INFO + ".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, d / INFO)
    return serial


def current_update_key(directory, serial=None):
    """(private key, certificate bytes, serial) of the newest (or the given) update key."""
    d = Path(directory)
    info = load_info(d)
    serial = serial or info["serial"]
    name = _update_name(serial)
    key = load_private(d / f"{name}.key")
    try:
        cert = (d / f"{name}.cert").read_bytes()
    except OSError:
        raise KeyFileError(f"certificate {d / name}.cert is missing") from None
    return key, cert, serial


def anchors(directory, key_floor=1):
    """The trust anchors a device pins at the factory: root public keys and the key floor."""
    info = load_info(directory)
    return {"roots": [{"alg": info["root_alg"], "key": info["root_public"]}],
            "key_floor": key_floor}
