"""Reference arithmetic for tools/gen_vectors.py: affine Ed25519 and P-256 (slow, only for
building edge cases), and the `cryptography` verifiers every generated expectation is checked
against."""

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

# ---- Ed25519 reference arithmetic (affine, slow, only for building cases) ----
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def ed_add(p, q):
    (x1, y1), (x2, y2) = p, q
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P,
            (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P)


def _mul(k, p, add, zero):
    """k * p by double-and-add in the group of `add` (identity `zero`)."""
    acc = zero
    while k:
        if k & 1:
            acc = add(acc, p)
        p = add(p, p)
        k >>= 1
    return acc


def ed_mul(k, p):
    return _mul(k, p, ed_add, (0, 1))


def ed_x(y, sign):
    """The x with this parity for y, or None if y is not on the curve."""
    xx = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    x = pow(xx, (P + 3) // 8, P)
    if x * x % P != xx:
        x = x * SQRT_M1 % P
    if x * x % P != xx:
        return None
    return x if x & 1 == sign else (P - x) % P


def ed_enc(p):
    return (p[1] | (p[0] & 1) << 255).to_bytes(32, "little")


def ed_hash(*parts):
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % L


BASE = (ed_x(4 * pow(5, -1, P) % P, 0), 4 * pow(5, -1, P) % P)


def ed_torsion8():
    """A point of order exactly 8 (the curve has 8L points)."""
    y = 2
    while True:
        x = ed_x(y, 0)
        if x is not None:
            t = ed_mul(L, (x, y))
            if ed_mul(4, t) != (0, 1):
                return t
        y += 1


def ed_secret(seed):
    """(a, prefix) of RFC 8032 5.1.5 for a 32-byte seed."""
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little") & ((1 << 254) - 8) | 1 << 254
    return a, h[32:]


def ed_raw(key):
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ed_ref_verify(pk, msg, sig):
    """`cryptography`'s verdict (OpenSSL: decodes A leniently, otherwise the same rules)."""
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


# ---- P-256 reference arithmetic (affine) ----
EP = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
EN = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
EB = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
     0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def ec_add(p, q):
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0]:
        if (p[1] + q[1]) % EP == 0:
            return None
        m = (3 * p[0] * p[0] - 3) * pow(2 * p[1], -1, EP) % EP
    else:
        m = (q[1] - p[1]) * pow(q[0] - p[0], -1, EP) % EP
    x = (m * m - p[0] - q[0]) % EP
    return x, (m * (p[0] - x) - p[1]) % EP


def ec_mul(k, p):
    return _mul(k, p, ec_add, None)  # None: the point at infinity


def ec_pub(point):
    return b"\x04" + point[0].to_bytes(32, "big") + point[1].to_bytes(32, "big")


def ec_sig(r, s):
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def ec_ref_verify(pub, msg, sig):
    """`cryptography`'s verdict on an r||s signature (64 bytes) under an uncompressed key (the
    only key encoding the device takes)."""
    if len(sig) != 64 or len(pub) != 65 or pub[0] != 4:
        return False
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        key.verify(encode_dss_signature(r, s), msg, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False
