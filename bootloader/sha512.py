# SHA-512 (FIPS 180-4) for the boot stage: MicroPython's hashlib has no sha512 and Ed25519 needs it.
#
# Two compression backends with one interface, selected as ed25519.py selects its field:
# - _Int: plain Python ints, the same on every port. A rotation of a 64-bit word x is a shift
#   of x * (2**64 + 1), whose two copies of x supply the bits that wrap around.
# - _Word: viper code on unsigned machine words, which wrap modulo 2**64 by themselves; chosen
#   only where sys.maxsize says words are 64 bits (the unix port). On 32-bit ports it is
#   compiled but never called (no literal in it is wider than 31 bits).
# Every Ed25519 check hashes R || A || message with it, so it is on the boot path twice.
import sys

import micropython
from micropython import const

_MASK = const(0xFFFFFFFFFFFFFFFF)
_BLOCK = const(128)

# Round constants: the first 64 bits of the fractional parts of the cube roots of the first 80
# primes, big-endian; and the initial state (square roots of the first 8 primes).
_K = bytes.fromhex(
    "428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc"
    "3956c25bf348b53859f111f1b605d019923f82a4af194f9bab1c5ed5da6d8118"
    "d807aa98a303024212835b0145706fbe243185be4ee4b28c550c7dc3d5ffb4e2"
    "72be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235c19bf174cf692694"
    "e49b69c19ef14ad2efbe4786384f25e30fc19dc68b8cd5b5240ca1cc77ac9c65"
    "2de92c6f592b02754a7484aa6ea6e4835cb0a9dcbd41fbd476f988da831153b5"
    "983e5152ee66dfaba831c66d2db43210b00327c898fb213fbf597fc7beef0ee4"
    "c6e00bf33da88fc2d5a79147930aa72506ca6351e003826f142929670a0e6e70"
    "27b70a8546d22ffc2e1b21385c26c9264d2c6dfc5ac42aed53380d139d95b3df"
    "650a73548baf63de766a0abb3c77b2a881c2c92e47edaee692722c851482353b"
    "a2bfe8a14cf10364a81a664bbc423001c24b8b70d0f89791c76c51a30654be30"
    "d192e819d6ef5218d69906245565a910f40e35855771202a106aa07032bbd1b8"
    "19a4c116b8d2d0c81e376c085141ab532748774cdf8eeb9934b0bcb5e19b48a8"
    "391c0cb3c5c95a634ed8aa4ae3418acb5b9cca4f7763e373682e6ff3d6b2b8a3"
    "748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec"
    "90befffa23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532b"
    "ca273eceea26619cd186b8c721c0c207eada7dd6cde0eb1ef57d4f7fee6ed178"
    "06f067aa72176fba0a637dc5a2c898a6113f9804bef90dae1b710b35131c471b"
    "28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc431d67c49c100d4c"
    "4cc5d4becb3e42b6597f299cfc657e2a5fcb6fab3ad6faec6c44198c4a475817"
)
_H0 = bytes.fromhex(
    "6a09e667f3bcc908bb67ae8584caa73b3c6ef372fe94f82ba54ff53a5f1d36f1"
    "510e527fade682d19b05688c2b3e6c1f1f83d9abfb41bd6b5be0cd19137e2179"
)


def _words(b):
    return [int.from_bytes(b[i:i + 8], "big") for i in range(0, len(b), 8)]


def _int_compress(h, block):
    """Mix one 128-byte block into the state h (a list of 8 ints)."""
    w = _words(block)  # the message schedule, kept as a ring of its last 16 words
    a, b, c, d, e, f, g, hh = h
    k = _K
    for t in range(80):
        if t >= 16:
            x = w[(t - 15) & 15]
            y = w[(t - 2) & 15]
            xx = x << 64 | x
            yy = y << 64 | y
            w[t & 15] = (w[t & 15] + (((xx >> 1 ^ xx >> 8) & _MASK) ^ x >> 7) + w[(t - 7) & 15]
                         + (((yy >> 19 ^ yy >> 61) & _MASK) ^ y >> 6)) & _MASK
        ee = e << 64 | e
        aa = a << 64 | a
        t1 = (hh + ((ee >> 14 ^ ee >> 18 ^ ee >> 41) & _MASK) + (g ^ (e & (f ^ g)))
              + int.from_bytes(k[8 * t:8 * t + 8], "big") + w[t & 15])
        t2 = ((aa >> 28 ^ aa >> 34 ^ aa >> 39) & _MASK) + ((a & b) | (c & (a | b)))
        hh = g
        g = f
        f = e
        e = (d + t1) & _MASK
        d = c
        c = b
        b = a
        a = (t1 + t2) & _MASK
    for i, v in enumerate((a, b, c, d, e, f, g, hh)):
        h[i] = (h[i] + v) & _MASK


class _Int:
    def state(self):
        return _words(_H0)

    compress = staticmethod(_int_compress)

    def out(self, h):
        return b"".join(v.to_bytes(8, "big") for v in h)


@micropython.viper
def _word_compress(h: ptr32, block: ptr8, k: ptr32, w: ptr32):
    # h: the state, 8 words; k: the 80 round constants; w: 16 words of scratch for the message
    # schedule ring. A word is two native uint32 halves, low half first (viper stores through
    # 32-bit pointers only); block: the 128 message bytes, big-endian words.
    i = 0
    while i < 16:
        j = i << 3
        w[2 * i + 1] = ((block[j] << 24) | (block[j + 1] << 16) | (block[j + 2] << 8)
                        | block[j + 3])
        w[2 * i] = ((block[j + 4] << 24) | (block[j + 5] << 16) | (block[j + 6] << 8)
                    | block[j + 7])
        i += 1
    a = uint(0)
    b = a
    c = a
    d = a
    e = a
    f = a
    g = a
    hh = a
    i = 14
    while i >= 0:  # the state's 8 words, the last first, shifted down into a .. hh
        hh = g
        g = f
        f = e
        e = d
        d = c
        c = b
        b = a
        a = uint(h[i]) | (uint(h[i + 1]) << 32)
        i -= 2
    t = 0
    while t < 80:
        r = 2 * (t & 15)
        if t >= 16:
            q = 2 * ((t - 15) & 15)
            x = uint(w[q]) | (uint(w[q + 1]) << 32)
            q = 2 * ((t - 2) & 15)
            y = uint(w[q]) | (uint(w[q + 1]) << 32)
            q = 2 * ((t - 7) & 15)
            v = (uint(w[r]) | (uint(w[r + 1]) << 32)) + (uint(w[q]) | (uint(w[q + 1]) << 32))
            v += ((x >> 1) | (x << 63)) ^ ((x >> 8) | (x << 56)) ^ (x >> 7)
            v += ((y >> 19) | (y << 45)) ^ ((y >> 61) | (y << 3)) ^ (y >> 6)
            w[r] = v
            w[r + 1] = v >> 32
        t1 = (hh + (((e >> 14) | (e << 50)) ^ ((e >> 18) | (e << 46)) ^ ((e >> 41) | (e << 23)))
              + (g ^ (e & (f ^ g))) + (uint(k[2 * t]) | (uint(k[2 * t + 1]) << 32))
              + (uint(w[r]) | (uint(w[r + 1]) << 32)))
        t2 = ((((a >> 28) | (a << 36)) ^ ((a >> 34) | (a << 30)) ^ ((a >> 39) | (a << 25)))
              + ((a & b) | (c & (a | b))))
        hh = g
        g = f
        f = e
        e = d + t1
        d = c
        c = b
        b = a
        a = t1 + t2
        t += 1
    i = 0
    while i < 16:  # a .. hh added back into the state's 8 words, a first
        v = (uint(h[i]) | (uint(h[i + 1]) << 32)) + a
        h[i] = v
        h[i + 1] = v >> 32
        a = b
        b = c
        c = d
        d = e
        e = f
        f = g
        g = hh
        i += 2


def _halves(words):
    """Big-endian 64-bit words -> each as two native uint32 halves, low half first."""
    out = bytearray(len(words))
    for i in range(0, len(words), 8):
        v = int.from_bytes(words[i:i + 8], "big")
        out[i:i + 4] = (v & 0xFFFFFFFF).to_bytes(4, sys.byteorder)
        out[i + 4:i + 8] = (v >> 32).to_bytes(4, sys.byteorder)
    return out


def _big(h):
    """The state's words (uint32 halves, low first) as big-endian bytes."""
    return b"".join((int.from_bytes(h[i + 4:i + 8], sys.byteorder) << 32
                     | int.from_bytes(h[i:i + 4], sys.byteorder)).to_bytes(8, "big")
                    for i in range(0, len(h), 8))


class _Word:
    def __init__(self):
        self._k = _halves(_K)
        self._w = bytearray(_BLOCK)

    def state(self):
        return _halves(_H0)

    def compress(self, h, block):
        _word_compress(h, block, self._k, self._w)

    def out(self, h):
        return _big(h)


_ops = None


def _use(ops):
    """Select a backend (tests call this to run the other one)."""
    global _ops
    _ops = ops


_use(_Word() if sys.maxsize > 0xFFFFFFFF else _Int())


class SHA512:
    """Incremental SHA-512: update(data) any number of times, then digest()."""

    def __init__(self, data=b""):
        self._h = _ops.state()
        self._buf = bytearray(_BLOCK)
        self._fill = 0
        self._len = 0
        if data:
            self.update(data)

    def update(self, data):
        n = len(data)
        self._len += n
        mv = memoryview(data)
        pos = 0
        if self._fill:
            pos = min(_BLOCK - self._fill, n)
            self._buf[self._fill:self._fill + pos] = mv[:pos]
            self._fill += pos
            if self._fill < _BLOCK:
                return
            _ops.compress(self._h, self._buf)
            self._fill = 0
        while n - pos >= _BLOCK:
            _ops.compress(self._h, mv[pos:pos + _BLOCK])
            pos += _BLOCK
        self._buf[:n - pos] = mv[pos:]
        self._fill = n - pos

    def digest(self):
        """The 64-byte digest of everything so far; the object stays usable."""
        h = self._h[:]
        buf = bytearray(self._buf)
        fill = self._fill
        buf[fill] = 0x80
        buf[fill + 1:] = bytes(_BLOCK - fill - 1)
        if fill >= _BLOCK - 16:  # no room left for the 128-bit length: one more block
            _ops.compress(h, buf)
            buf[:] = bytes(_BLOCK)
        buf[_BLOCK - 16:] = (self._len * 8).to_bytes(16, "big")
        _ops.compress(h, buf)
        return _ops.out(h)


def sha512(data):
    """SHA-512 of `data` (bytes-like) as 64 bytes."""
    return SHA512(data).digest()
