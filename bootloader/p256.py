# ECDSA P-256 with SHA-256 signature verification (FIPS 186-5 / SEC 1) for the boot stage.
#
# u1*G + u2*Q is computed in one pass (width-4 NAF of both scalars, Jacobian coordinates with
# a = -3, mixed additions from affine tables of odd multiples), and x(R) is compared with r
# projectively, so the only inversions are s**-1 mod n and one batch inversion for Q's table.
# Plain Python ints: runs on every port.
import hashlib

import micropython
from micropython import const

_P = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF)
_N = const(0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)
_B = const(0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B)
_GX = const(0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296)
_GY = const(0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)
_ODD = const(4)  # table entries 1P, 3P, 5P, 7P: width 5 is no faster and needs 9 KB more

_gtab = None  # G's table, built on first use


def _inv(a, m):
    """a**-1 mod m for a prime m and a != 0 mod m (extended Euclid: far cheaper than pow)."""
    r0, r1 = a % m, m
    s0, s1 = 1, 0
    while r1:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        s0, s1 = s1, s0 - q * s1
    return s0 % m


def _dbl(p):
    """p = 2p in place, Jacobian [X, Y, Z] (Z = 0 is the point at infinity)."""
    x, y, z = p
    d = z * z % _P
    g = y * y % _P
    b = x * g % _P
    a = 3 * (x - d) * (x + d) % _P
    x3 = (a * a - 8 * b) % _P
    p[0] = x3
    p[1] = (a * (4 * b - x3) - 8 * g * g) % _P
    p[2] = 2 * y * z % _P


def _madd(p, qx, qy):
    """p = p + (qx, qy) in place: Jacobian plus affine, handling every special case."""
    x1, y1, z1 = p
    if z1 == 0:
        p[0] = qx
        p[1] = qy
        p[2] = 1
        return
    zz = z1 * z1 % _P
    h = (qx * zz - x1) % _P
    r = 2 * (qy * z1 * zz - y1) % _P
    if h == 0:
        if r == 0:
            _dbl(p)  # same point
        else:
            p[2] = 0  # opposite points
        return
    hh = h * h % _P
    i = 4 * hh
    j = h * i % _P
    v = x1 * i % _P
    x3 = (r * r - j - 2 * v) % _P
    p[0] = x3
    p[1] = (r * (v - x3) - 2 * y1 * j) % _P
    p[2] = ((z1 + h) * (z1 + h) - zz - hh) % _P


def _table(x, y):
    """Affine odd multiples [(x, y) of 1P, 3P, 5P, 7P] of a point P of order n."""
    p2 = [x, y, 1]
    _dbl(p2)
    zi = _inv(p2[2], _P)
    x2 = p2[0] * zi * zi % _P
    y2 = p2[1] * zi * zi * zi % _P
    jac = [[x, y, 1]]
    for _ in range(_ODD - 1):
        q = list(jac[-1])
        _madd(q, x2, y2)
        jac.append(q)
    # one inversion for all the Zs (Montgomery's trick); none is 0 since P has prime order n
    acc = [1]
    for q in jac:
        acc.append(acc[-1] * q[2] % _P)
    inv = _inv(acc[-1], _P)
    out = [None] * _ODD
    for k in range(_ODD - 1, -1, -1):
        zi = inv * acc[k] % _P
        inv = inv * jac[k][2] % _P
        zz = zi * zi % _P
        out[k] = (jac[k][0] * zz % _P, jac[k][1] * zz * zi % _P)
    return out


def _naf(k):
    """Width-4 NAF of 0 <= k < 2**256: bytearray(257) of zero or odd digits in -7..7."""
    out = bytearray(257)
    i = 0
    while k:
        if k & 1:
            d = k & 15
            if d > 8:
                d -= 16
            k -= d
            out[i] = d & 0xFF
        k >>= 1
        i += 1
    return out


@micropython.native
def _double_mul(n1, t1, n2, t2):
    """Jacobian sum(n1[i] 2**i) * (table t1) + sum(n2[i] 2**i) * (table t2)."""
    acc = [1, 1, 0]
    i = 256
    while i >= 0:
        _dbl(acc)
        d = n1[i]
        if d:
            if d < 128:
                x, y = t1[d >> 1]
                _madd(acc, x, y)
            else:
                x, y = t1[(256 - d) >> 1]
                _madd(acc, x, _P - y)
        d = n2[i]
        if d:
            if d < 128:
                x, y = t2[d >> 1]
                _madd(acc, x, y)
            else:
                x, y = t2[(256 - d) >> 1]
                _madd(acc, x, _P - y)
        i -= 1
    return acc


def _public_point(key):
    """65-byte uncompressed SEC 1 key -> (x, y) on the curve, else None."""
    if len(key) != 65 or key[0] != 4:
        return None  # also rejects the 1-byte encoding of infinity and compressed keys
    x = int.from_bytes(key[1:33], "big")
    y = int.from_bytes(key[33:], "big")
    if x >= _P or y >= _P:
        return None
    if (y * y - (x * x * x - 3 * x + _B)) % _P:
        return None
    return x, y


def verify_digest(public_key, digest, signature):
    """True only if `signature` (64 bytes r||s) signs the 32-byte SHA-256 `digest` under
    `public_key` (65 bytes 04||X||Y). Malformed input gives False, never an exception."""
    global _gtab
    if len(digest) != 32 or len(signature) != 64:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < _N and 0 < s < _N):
        return False
    q = _public_point(public_key)
    if q is None:
        return False
    w = _inv(s, _N)
    e = int.from_bytes(digest, "big")  # the digest is as long as n: no truncation
    if _gtab is None:
        _gtab = _table(_GX, _GY)
    x, _, z = _double_mul(_naf(e * w % _N), _gtab, _naf(r * w % _N), _table(*q))
    if z == 0:
        return False
    # x(R) = X / Z^2 mod p; accept if it is r mod n, i.e. r or r + n (when below p)
    zz = z * z % _P
    if x == r * zz % _P:
        return True
    return r + _N < _P and x == (r + _N) * zz % _P


def verify(public_key, message, signature):
    """True only if `signature` (64 bytes r||s) is a valid ECDSA P-256/SHA-256 signature of
    `message` under `public_key` (65 bytes 04||X||Y); otherwise False, never an exception."""
    return verify_digest(public_key, hashlib.sha256(message).digest(), signature)
