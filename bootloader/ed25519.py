# Ed25519 signature verification (RFC 8032, strict, cofactorless) for the boot stage.
#
# verify() decodes A and S strictly, hashes R||A||M with SHA-512, computes [S]B - [k]A in one
# double-and-add pass (width-5 NAF for both scalars, extended twisted Edwards coordinates with
# the a = -1 formulas) and compares the encoding of the result with R, byte for byte.
#
# Field arithmetic has two backends with the same interface. _Int uses Python ints and runs on
# every port. _Wide keeps a field element in ten 25.5-bit limbs and multiplies them with viper
# code whose intermediate sums need 64-bit machine words, so it is selected only where
# sys.maxsize says words are 64 bits (the unix port); on the 32-bit ESP32 ports it is compiled
# but never called (no literal in it is wider than 31 bits).
import sys

import micropython
from micropython import const

from sha512 import SHA512

_P = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFED)  # 2**255 - 19
_L = const(0x1000000000000000000000000000000014DEF9DEA2F79CD65812631A5CF5D3ED)  # group order
_D = const(0x52036CEE2B6FFE738CC740797779E89800700A4D4141D8AB75EB4DCA135978A3)  # -121665/121666
_SQRT_M1 = const(0x2B8324804FC1DF0B2B4D00993DFBD7A72F431806AD2FE478C4EE1B274A0EA0B0)
_MASK255 = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF)
_B_ENC = b"\x58" + b"\x66" * 31  # the base point: y = 4/5, x even
_ODD = const(8)  # table entries: the odd multiples 1P, 3P, ..., 15P of a width-5 NAF


def _chain(z, mul, sqn):
    """z**(2**250 - 1) and z**11 with 254 squarings and 11 multiplications."""
    z2 = sqn(z, 1)
    z9 = mul(sqn(z2, 2), z)
    z11 = mul(z9, z2)
    t = mul(sqn(z11, 1), z9)  # 2**5 - 1
    t10 = mul(sqn(t, 5), t)
    t20 = mul(sqn(t10, 10), t10)
    t50 = mul(sqn(mul(sqn(t20, 20), t20), 10), t10)
    t100 = mul(sqn(t50, 50), t50)
    return mul(sqn(mul(sqn(t100, 100), t100), 50), t50), z11


# ---- backend 1: Python ints (any port) ----

def _int_mul(a, b):
    return a * b % _P


def _int_sqn(a, n):
    for _ in range(n):
        a = a * a % _P
    return a


class _Int:
    """Points are lists [X, Y, Z, T]; cached points are [Y-X, Y+X, 2dT, 2Z]."""

    def point(self, x, y):
        return [x, y, 1, x * y % _P]

    def identity(self):
        return [0, 1, 1, 0]

    def copy(self, p):
        return list(p)

    def cached(self, p):
        x, y, z, t = p
        return [(y - x) % _P, (y + x) % _P, 2 * _D * t % _P, 2 * z % _P]

    def dbl(self, p, need_t):
        x, y, z, _ = p
        a = x * x % _P
        b = y * y % _P
        h = a + b
        e = h - (x + y) * (x + y)
        g = a - b
        f = g + 2 * z * z
        p[0] = e * f % _P
        p[1] = g * h % _P
        p[2] = f * g % _P
        if need_t:
            p[3] = e * h % _P

    def add(self, p, q, neg, need_t):
        x, y, z, t = p
        if neg:  # -q: swap Y-X and Y+X, negate 2dT
            a = (y - x) * q[1] % _P
            b = (y + x) * q[0] % _P
            c = -t * q[2] % _P
        else:
            a = (y - x) * q[0] % _P
            b = (y + x) * q[1] % _P
            c = t * q[2] % _P
        d = z * q[3] % _P
        e = b - a
        f = d - c
        g = d + c
        h = b + a
        p[0] = e * f % _P
        p[1] = g * h % _P
        p[2] = f * g % _P
        if need_t:
            p[3] = e * h % _P

    def double_mul(self, ns, tb, nk, ta, top):
        return _steps(self, ns, tb, nk, ta, top)

    def pow_p58(self, z):
        t, _ = _chain(z, _int_mul, _int_sqn)
        return _int_mul(_int_sqn(t, 2), z)

    def affine(self, p):
        t, z11 = _chain(p[2], _int_mul, _int_sqn)
        zi = _int_mul(_int_sqn(t, 5), z11)
        return p[0] * zi % _P, p[1] * zi % _P


# ---- backend 2: ten limbs and viper, 64-bit machine words only ----
# An element is 10 little-endian uint32 limbs of 26, 25, 26, 25, ... bits (bit offsets
# ceil(25.5 * i)); a point is 4 of them (X, Y, Z, T) in a bytearray(160); a cached point is
# (Y-X, Y+X, 2dT, 2Z). Products are carried so every limb is back below 2**26; subtraction adds
# 2p or 4p first so limbs never go negative. Worst-case column sums stay below 2**62.

@micropython.viper
def _mul(o: ptr32, a: ptr32, b: ptr32, n: int):
    # o = a * b element by element over the first n words; o may alias a or b.
    k = 0
    while k < n:
        f0 = int(a[k]); f1 = int(a[k + 1]); f2 = int(a[k + 2]); f3 = int(a[k + 3])
        f4 = int(a[k + 4]); f5 = int(a[k + 5]); f6 = int(a[k + 6]); f7 = int(a[k + 7])
        f8 = int(a[k + 8]); f9 = int(a[k + 9])
        g0 = int(b[k]); g1 = int(b[k + 1]); g2 = int(b[k + 2]); g3 = int(b[k + 3])
        g4 = int(b[k + 4]); g5 = int(b[k + 5]); g6 = int(b[k + 6]); g7 = int(b[k + 7])
        g8 = int(b[k + 8]); g9 = int(b[k + 9])
        # odd*odd limb products carry an extra factor 2; wrapping past 2**255 a factor 19
        d1 = f1 << 1; d3 = f3 << 1; d5 = f5 << 1; d7 = f7 << 1; d9 = f9 << 1
        n1 = g1 * 19; n2 = g2 * 19; n3 = g3 * 19; n4 = g4 * 19; n5 = g5 * 19
        n6 = g6 * 19; n7 = g7 * 19; n8 = g8 * 19; n9 = g9 * 19
        h0 = (f0 * g0 + d1 * n9 + f2 * n8 + d3 * n7 + f4 * n6
              + d5 * n5 + f6 * n4 + d7 * n3 + f8 * n2 + d9 * n1)
        h1 = (f0 * g1 + f1 * g0 + f2 * n9 + f3 * n8 + f4 * n7
              + f5 * n6 + f6 * n5 + f7 * n4 + f8 * n3 + f9 * n2)
        h2 = (f0 * g2 + d1 * g1 + f2 * g0 + d3 * n9 + f4 * n8
              + d5 * n7 + f6 * n6 + d7 * n5 + f8 * n4 + d9 * n3)
        h3 = (f0 * g3 + f1 * g2 + f2 * g1 + f3 * g0 + f4 * n9
              + f5 * n8 + f6 * n7 + f7 * n6 + f8 * n5 + f9 * n4)
        h4 = (f0 * g4 + d1 * g3 + f2 * g2 + d3 * g1 + f4 * g0
              + d5 * n9 + f6 * n8 + d7 * n7 + f8 * n6 + d9 * n5)
        h5 = (f0 * g5 + f1 * g4 + f2 * g3 + f3 * g2 + f4 * g1
              + f5 * g0 + f6 * n9 + f7 * n8 + f8 * n7 + f9 * n6)
        h6 = (f0 * g6 + d1 * g5 + f2 * g4 + d3 * g3 + f4 * g2
              + d5 * g1 + f6 * g0 + d7 * n9 + f8 * n8 + d9 * n7)
        h7 = (f0 * g7 + f1 * g6 + f2 * g5 + f3 * g4 + f4 * g3
              + f5 * g2 + f6 * g1 + f7 * g0 + f8 * n9 + f9 * n8)
        h8 = (f0 * g8 + d1 * g7 + f2 * g6 + d3 * g5 + f4 * g4
              + d5 * g3 + f6 * g2 + d7 * g1 + f8 * g0 + d9 * n9)
        h9 = (f0 * g9 + f1 * g8 + f2 * g7 + f3 * g6 + f4 * g5
              + f5 * g4 + f6 * g3 + f7 * g2 + f8 * g1 + f9 * g0)
        c = h0 >> 26; h1 += c; h0 &= 0x3FFFFFF
        c = h1 >> 25; h2 += c; h1 &= 0x1FFFFFF
        c = h2 >> 26; h3 += c; h2 &= 0x3FFFFFF
        c = h3 >> 25; h4 += c; h3 &= 0x1FFFFFF
        c = h4 >> 26; h5 += c; h4 &= 0x3FFFFFF
        c = h5 >> 25; h6 += c; h5 &= 0x1FFFFFF
        c = h6 >> 26; h7 += c; h6 &= 0x3FFFFFF
        c = h7 >> 25; h8 += c; h7 &= 0x1FFFFFF
        c = h8 >> 26; h9 += c; h8 &= 0x3FFFFFF
        c = h9 >> 25; h0 += c * 19; h9 &= 0x1FFFFFF
        c = h0 >> 26; h1 += c; h0 &= 0x3FFFFFF
        o[k] = h0; o[k + 1] = h1; o[k + 2] = h2; o[k + 3] = h3; o[k + 4] = h4
        o[k + 5] = h5; o[k + 6] = h6; o[k + 7] = h7; o[k + 8] = h8; o[k + 9] = h9
        k += 10


@micropython.viper
def _add_pre(v: ptr32, p: ptr32, neg: int):
    # v = (Y - X, Y + X, T, Z), or for adding -q: (Y + X, Y - X, -T, Z); 2p keeps it positive
    i = 0
    while i < 10:
        q = ((0x4000000 >> (i & 1)) - 1) << 1
        if i == 0:
            q -= 36
        x = int(p[i])
        y = int(p[10 + i])
        if neg:
            v[i] = y + x
            v[10 + i] = y + q - x
            v[20 + i] = q - int(p[30 + i])
        else:
            v[i] = y + q - x
            v[10 + i] = y + x
            v[20 + i] = p[30 + i]
        v[30 + i] = p[20 + i]
        i += 1


@micropython.viper
def _unpack(o: ptr32, b: ptr8):
    # 32 little-endian bytes (a value below 2**255) -> 10 limbs
    i = 0
    while i < 10:
        e = 25 * i + ((i + 1) >> 1)
        j = e >> 3
        v = int(b[j]) | (int(b[j + 1]) << 8) | (int(b[j + 2]) << 16) | (int(b[j + 3]) << 24)
        s = 26 - (i & 1)
        o[i] = (v >> (e & 7)) & ((1 << s) - 1)
        i += 1


@micropython.viper
def _pack(b: ptr8, a: ptr32):
    # 10 carried limbs -> 32 little-endian bytes of the same value (not yet reduced mod p)
    acc = 0
    j = 0
    i = 0
    while i < 10:
        e = 25 * i + ((i + 1) >> 1)
        acc += int(a[i]) << (e - (j << 3))
        nxt = 256 if i == 9 else 25 * (i + 1) + ((i + 2) >> 1)
        while (j << 3) + 8 <= nxt:
            b[j] = acc & 0xFF
            acc >>= 8
            j += 1
        i += 1


def _w_fe(x):
    o = bytearray(40)
    _unpack(o, x.to_bytes(32, "little"))
    return o


def _w_int(a):
    b = bytearray(32)
    _pack(b, a)
    return int.from_bytes(b, "little") % _P


def _w_mul(a, b):
    o = bytearray(40)
    _mul(o, a, b, 10)
    return o


def _w_sqn(a, n):
    o = bytearray(40)
    _sq(o, a, 10, n)
    return o


@micropython.viper
def _sq(o: ptr32, a: ptr32, n: int, r: int):
    # o = a squared r times over, element by element over the first n words (r > 1 only
    # with n = 10); o may alias a. The column sums are those of _mul(o, a, a, n), with each
    # pair of equal products taken once and doubled; the carry is _mul's, inline in both (a
    # call per product for it would cost a quarter of the product).
    k = 0
    while k < n:
        f0 = int(a[k]); f1 = int(a[k + 1]); f2 = int(a[k + 2]); f3 = int(a[k + 3])
        f4 = int(a[k + 4]); f5 = int(a[k + 5]); f6 = int(a[k + 6]); f7 = int(a[k + 7])
        f8 = int(a[k + 8]); f9 = int(a[k + 9])
        left = r
        while left > 0:
            d0 = f0 << 1; d1 = f1 << 1; d2 = f2 << 1; d3 = f3 << 1; d4 = f4 << 1
            d5 = f5 << 1; d6 = f6 << 1; d7 = f7 << 1; d8 = f8 << 1; d9 = f9 << 1
            e1 = f1 << 2; e3 = f3 << 2; e5 = f5 << 2; e7 = f7 << 2
            n5 = f5 * 19; n6 = f6 * 19; n7 = f7 * 19; n8 = f8 * 19; n9 = f9 * 19
            h0 = f0 * f0 + e1 * n9 + d2 * n8 + e3 * n7 + d4 * n6 + d5 * n5
            h1 = d0 * f1 + d2 * n9 + d3 * n8 + d4 * n7 + d5 * n6
            h2 = d0 * f2 + d1 * f1 + e3 * n9 + d4 * n8 + e5 * n7 + f6 * n6
            h3 = d0 * f3 + d1 * f2 + d4 * n9 + d5 * n8 + d6 * n7
            h4 = d0 * f4 + e1 * f3 + f2 * f2 + e5 * n9 + d6 * n8 + d7 * n7
            h5 = d0 * f5 + d1 * f4 + d2 * f3 + d6 * n9 + d7 * n8
            h6 = d0 * f6 + e1 * f5 + d2 * f4 + d3 * f3 + e7 * n9 + f8 * n8
            h7 = d0 * f7 + d1 * f6 + d2 * f5 + d3 * f4 + d8 * n9
            h8 = d0 * f8 + e1 * f7 + d2 * f6 + e3 * f5 + f4 * f4 + d9 * n9
            h9 = d0 * f9 + d1 * f8 + d2 * f7 + d3 * f6 + d4 * f5
            c = h0 >> 26; h1 += c; h0 &= 0x3FFFFFF
            c = h1 >> 25; h2 += c; h1 &= 0x1FFFFFF
            c = h2 >> 26; h3 += c; h2 &= 0x3FFFFFF
            c = h3 >> 25; h4 += c; h3 &= 0x1FFFFFF
            c = h4 >> 26; h5 += c; h4 &= 0x3FFFFFF
            c = h5 >> 25; h6 += c; h5 &= 0x1FFFFFF
            c = h6 >> 26; h7 += c; h6 &= 0x3FFFFFF
            c = h7 >> 25; h8 += c; h7 &= 0x1FFFFFF
            c = h8 >> 26; h9 += c; h8 &= 0x3FFFFFF
            c = h9 >> 25; h0 += c * 19; h9 &= 0x1FFFFFF
            c = h0 >> 26; h1 += c; h0 &= 0x3FFFFFF
            f0 = h0; f1 = h1; f2 = h2; f3 = h3; f4 = h4
            f5 = h5; f6 = h6; f7 = h7; f8 = h8; f9 = h9
            left -= 1
        o[k] = f0; o[k + 1] = f1; o[k + 2] = f2; o[k + 3] = f3; o[k + 4] = f4
        o[k + 5] = f5; o[k + 6] = f6; o[k + 7] = f7; o[k + 8] = f8; o[k + 9] = f9
        k += 10


@micropython.viper
def _point_op(p: ptr32, q: ptr32, s: ptr32, op: int):
    # One group operation on the point p in place, with 120 words of scratch s (v, u, w).
    # op bit 0: double p (q unused); else add the cached point q. Bit 1: add -q instead.
    # Bit 2: the result's T is needed (the next operation is an addition).
    v = ptr32(uint(s))
    u = ptr32(uint(s) + 160)
    w = ptr32(uint(s) + 320)
    i = 0
    if op & 1:
        while i < 10:  # v = (X, Y, Z, X + Y), squared
            x = int(p[i])
            y = int(p[10 + i])
            v[i] = x
            v[10 + i] = y
            v[20 + i] = p[20 + i]
            v[30 + i] = x + y
            i += 1
        _sq(v, v, 40, 1)
        # (A, B, C, S) = (X^2, Y^2, Z^2, (X+Y)^2) -> raw (E, F, G, H), each negated (the same
        # projective point): H = A + B, E = S - H, G = B - A, F = 2C - G; 4p keeps limbs
        # non-negative.
        i = 0
        while i < 10:
            m = ((0x4000000 >> (i & 1)) - 1) << 2
            if i == 0:
                m -= 72
            a = int(v[i])
            b = int(v[10 + i])
            w[i] = int(v[30 + i]) + m - a - b
            w[10 + i] = (int(v[20 + i]) << 1) + m + a - b
            w[20 + i] = b + m - a
            w[30 + i] = a + b
            i += 1
    else:
        neg = op & 2
        _add_pre(v, p, neg)
        _mul(v, v, q, 40)
        # (A, B, C, D) -> raw E = B - A, F = D - C, G = D + C, H = B + A. With neg, v holds
        # A, B, C, D of (-p) + q (see _add_pre); negating E negates that sum, giving p + (-q).
        while i < 10:
            m = ((0x4000000 >> (i & 1)) - 1) << 2
            if i == 0:
                m -= 72
            a = int(v[i])
            b = int(v[10 + i])
            c = int(v[20 + i])
            d = int(v[30 + i])
            w[i] = (a - b if neg else b - a) + m
            w[10 + i] = d + m - c
            w[20 + i] = d + c
            w[30 + i] = b + a
            i += 1
    # w holds raw (E, F, G, H) below 2**31 per limb: carry each, then lay them out as
    # u = (E, G, F, E), w = (F, H, G, H) so that _mul(p, u, w) gives (EF, GH, FG, EH).
    k = 0
    while k < 40:
        c = 0
        i = k
        while i < k + 10:  # a 26-bit limb, then a 25-bit one
            t = int(w[i]) + c
            w[i] = t & 0x3FFFFFF
            t = int(w[i + 1]) + (t >> 26)
            w[i + 1] = t & 0x1FFFFFF
            c = t >> 25
            i += 2
        t = int(w[k]) + c * 19
        w[k] = t & 0x3FFFFFF
        w[k + 1] = int(w[k + 1]) + (t >> 26)
        k += 10
    i = 0
    while i < 10:
        e = w[i]
        u[i] = e
        u[30 + i] = e
        f = w[10 + i]
        u[20 + i] = f
        w[i] = f
        u[10 + i] = w[20 + i]
        w[10 + i] = w[30 + i]
        i += 1
    _mul(p, u, w, 40 if op & 4 else 30)


@micropython.viper
def _ladder(acc: ptr32, s: ptr32, ns: ptr8, nk: ptr8, tb, ta, top: int):
    # _double_mul for this backend in one call: tb and ta are the lists of the 8 cached odd
    # multiples of the two points, s is _point_op's scratch.
    i = top
    while i >= 0:
        a = int(ns[i])
        b = int(nk[i])
        if i != top:
            _point_op(acc, acc, s, 5 if (a or b) else 1)
        if a:
            op = 4 if b else 0
            if a >= 128:
                a = 256 - a
                op |= 2
            _point_op(acc, tb[a >> 1], s, op)
        if b:
            op = 0
            if b >= 128:
                b = 256 - b
                op = 2
            _point_op(acc, ta[b >> 1], s, op)
        i -= 1


class _Wide:
    """Points and cached points as bytearray(160) of limbs; see the comment above _mul."""

    def __init__(self):
        self._s = bytearray(480)  # scratch, reused by every operation
        self._k = bytearray(_w_fe(1) + _w_fe(1) + _w_fe(2 * _D % _P) + _w_fe(2))

    def point(self, x, y):
        return bytearray(_w_fe(x) + _w_fe(y) + _w_fe(1) + _w_fe(x * y % _P))

    def identity(self):
        return self.point(0, 1)

    def copy(self, p):
        return bytearray(p)

    def cached(self, p):
        c = bytearray(160)
        _add_pre(c, p, 0)  # (Y - X, Y + X, T, Z), times (1, 1, 2d, 2)
        _mul(c, c, self._k, 40)
        return c

    def dbl(self, p, need_t):
        _point_op(p, p, self._s, 5 if need_t else 1)

    def add(self, p, q, neg, need_t):
        _point_op(p, q, self._s, (2 if neg else 0) | (4 if need_t else 0))

    def double_mul(self, ns, tb, nk, ta, top):
        acc = self.identity()
        _ladder(acc, self._s, ns, nk, tb, ta, top)
        return acc

    def pow_p58(self, z):
        a = _w_fe(z)
        t, _ = _chain(a, _w_mul, _w_sqn)
        return _w_int(_w_mul(_w_sqn(t, 2), a))

    def affine(self, p):
        t, z11 = _chain(p[80:120], _w_mul, _w_sqn)
        zi = _w_mul(_w_sqn(t, 5), z11)
        return _w_int(_w_mul(p[0:40], zi)), _w_int(_w_mul(p[40:80], zi))


# ---- shared: encodings, scalars, the double-scalar multiplication ----

def _decode(b):
    """32 bytes -> affine (x, y) ints, or None unless a canonical encoding of a curve point."""
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= _MASK255
    if y >= _P:
        return None
    yy = y * y % _P
    u = (yy - 1) % _P
    v = (_D * yy + 1) % _P
    v3 = v * v % _P * v % _P
    uv3 = u * v3 % _P
    x = uv3 * _ops.pow_p58(uv3 * v3 % _P * v % _P) % _P  # candidate sqrt(u / v)
    vxx = v * x % _P * x % _P
    if vxx != u:
        if vxx != _P - u:
            return None  # u / v is not a square: no point has this y
        x = x * _SQRT_M1 % _P
    if sign and x == 0:
        return None  # "-0" is not a canonical encoding
    if x & 1 != sign:
        x = _P - x
    return x, y


def _encode(x, y):
    return (y | (x & 1) << 255).to_bytes(32, "little")


@micropython.native
def _naf(s):
    """Width-5 NAF of a 32-byte little-endian scalar below 2**253, as a bytearray(256) of
    signed digits (two's complement bytes): zero or odd in -15..15."""
    out = bytearray(256)
    carry = 0
    i = 0
    while i < 256:
        if (s[i >> 3] >> (i & 7)) & 1 == carry:
            i += 1  # bit + carry is even: digit 0, carry unchanged
            continue
        j = i >> 3
        win = s[j] | (s[j + 1] << 8 if j < 31 else 0)
        word = ((win >> (i & 7)) & 31) + carry  # odd
        if word > 16:
            out[i] = (word - 32) & 0xFF
            carry = 1
        else:
            out[i] = word
            carry = 0
        i += 5
    return out


def _table(p):
    """Cached odd multiples 1p, 3p, ..., 15p of a backend point p."""
    ops = _ops
    t = [ops.cached(p)]
    p2 = ops.copy(p)
    ops.dbl(p2, True)
    c2 = ops.cached(p2)
    q = ops.copy(p)
    for _ in range(_ODD - 1):
        ops.add(q, c2, False, True)
        t.append(ops.cached(q))
    return t


def _double_mul(ns, tb, nk, ta):
    """sum(ns[i] 2**i) * (table tb) + sum(nk[i] 2**i) * (table ta), as a backend point."""
    top = 255
    while top >= 0 and not (ns[top] or nk[top]):
        top -= 1
    return _ops.double_mul(ns, tb, nk, ta, top)


@micropython.native
def _steps(ops, ns, tb, nk, ta, top):
    """The double-and-add pass itself, one group operation per backend call."""
    acc = ops.identity()
    i = top
    while i >= 0:
        a = ns[i]
        b = nk[i]
        if i != top:
            ops.dbl(acc, a or b)
        if a:
            if a < 128:
                ops.add(acc, tb[a >> 1], False, b)
            else:
                ops.add(acc, tb[(256 - a) >> 1], True, b)
        if b:
            if b < 128:
                ops.add(acc, ta[b >> 1], False, False)
            else:
                ops.add(acc, ta[(256 - b) >> 1], True, False)
        i -= 1
    return acc


_ops = None
_btab = None


def _use(ops):
    """Select a backend (tests call this to run the other one)."""
    global _ops, _btab
    _ops = ops
    _btab = None


_use(_Wide() if sys.maxsize > 0xFFFFFFFF else _Int())


def verify(public_key, message, signature):
    """True only if `signature` (64 bytes R||S) is a valid Ed25519 signature of `message` under
    `public_key` (32 bytes). Any malformed key or signature gives False, never an exception."""
    global _btab
    if len(public_key) != 32 or len(signature) != 64:
        return False
    r = bytes(signature[:32])
    s = bytes(signature[32:])
    if int.from_bytes(s, "little") >= _L:
        return False  # non-canonical S (malleability)
    a = _decode(public_key)
    if a is None:
        return False
    h = SHA512(r)
    h.update(public_key)
    h.update(message)
    k = int.from_bytes(h.digest(), "little") % _L
    if _btab is None:
        bx, by = _decode(_B_ENC)
        _btab = _table(_ops.point(bx, by))
    # [S]B + [k](-A) must be R: negate A once instead of subtracting in the loop
    ta = _table(_ops.point(_P - a[0] if a[0] else 0, a[1]))
    q = _double_mul(_naf(s), _btab, _naf(k.to_bytes(32, "little")), ta)
    return _encode(*_ops.affine(q)) == r
