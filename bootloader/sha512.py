# SHA-512 (FIPS 180-4) for the boot stage: MicroPython's hashlib has no sha512 and Ed25519 needs it.
#
# Plain Python ints, so it is the same on 32- and 64-bit ports. A rotation of a 64-bit word x is
# a shift of x * (2**64 + 1), whose two copies of x supply the bits that wrap around.
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


def _compress(h, block):
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


class SHA512:
    """Incremental SHA-512: update(data) any number of times, then digest()."""

    def __init__(self, data=b""):
        self._h = _words(_H0)
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
            _compress(self._h, self._buf)
            self._fill = 0
        while n - pos >= _BLOCK:
            _compress(self._h, mv[pos:pos + _BLOCK])
            pos += _BLOCK
        self._buf[:n - pos] = mv[pos:]
        self._fill = n - pos

    def digest(self):
        """The 64-byte digest of everything so far; the object stays usable."""
        h = list(self._h)
        buf = bytearray(self._buf)
        fill = self._fill
        buf[fill] = 0x80
        buf[fill + 1:] = bytes(_BLOCK - fill - 1)
        if fill >= _BLOCK - 16:  # no room left for the 128-bit length: one more block
            _compress(h, buf)
            buf[:] = bytes(_BLOCK)
        buf[_BLOCK - 16:] = (self._len * 8).to_bytes(16, "big")
        _compress(h, buf)
        return b"".join(v.to_bytes(8, "big") for v in h)


def sha512(data):
    """SHA-512 of `data` (bytes-like) as 64 bytes."""
    return SHA512(data).digest()
