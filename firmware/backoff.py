# Reconnect timing for the cloud link: exponential backoff with full jitter (ETSI 4.9-3).
#
# Runs unchanged on MicroPython (device) and CPython (bench/fleet.py simulates 10,000
# devices with this very file). All arithmetic is on integer milliseconds, so a seeded
# generator gives the same delays on the unix port, on an ESP32 (single-precision floats)
# and on the host.
#
# Why these defaults (10,000 devices, targets: at most 2 % of the fleet connecting in any
# one second, 99 % back within the cap after the broker returns):
# - After boot, or after losing a stable connection, a device first waits
#   uniform(0, INITIAL_WINDOW). A fleet that loses power or its connection together then
#   arrives spread over the window: peak fraction per second ~ 1 / window = 1/90 = 1.1 %,
#   plus Poisson noise (sqrt(111) ~ 11 devices/s) that keeps the worst second near 1.4 %.
# - Each failed attempt then waits uniform(0, min(CAP, BASE * 2**attempt)). During a long
#   outage every device reaches the cap after ~7 attempts (2 s * 2**7 > 150 s) and then
#   retries at a mean interval of CAP/2 = 75 s: the dead broker sees ~ 2N/CAP = 133
#   attempts/s.
#   When it comes back, the time to a device's next attempt is the residual of a
#   uniform(0, CAP) gap: P(wait > r) = (1 - r/CAP)**2. So the arrival rate peaks at
#   2/CAP = 1.3 % of the fleet per second (worst second ~ 1.6 % with the noise) and 99 %
#   are back by r = 0.9 * CAP = 135 s, within the cap. A smaller cap reconnects faster but
#   2/CAP must stay below 2 %: CAP >= 100 s, with margin 150 s.
# - A connection that lasted STABLE resets the attempt counter; one that drops sooner
#   (a flapping broker, a refused session) keeps backing off.

import os

try:
    from micropython import const
except ImportError:  # CPython: the fleet simulation imports this file as is
    def const(x):
        return x

BASE_MS = const(2_000)
CAP_MS = const(150_000)
INITIAL_WINDOW_MS = const(90_000)
STABLE_MS = const(60_000)
_MAX_SHIFT = const(24)  # 2**24 * BASE is past any sane cap; keeps the ints small


def system_rng():
    """32 random bits from the platform's generator (the ESP32 hardware RNG on a device)."""
    b = os.urandom(4)
    return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]


class XorShift32:
    """A seeded 32-bit generator (xorshift32) for the deterministic mode.

    Same seed, same sequence on MicroPython and CPython. Not for secrets.
    """

    def __init__(self, seed):
        # Mix the seed (murmur3's finaliser) so that seeds 0, 1, 2 ... give unrelated streams.
        x = (seed + 0x9E3779B9) & 0xFFFFFFFF
        x = ((x ^ (x >> 16)) * 0x85EBCA6B) & 0xFFFFFFFF
        x = ((x ^ (x >> 13)) * 0xC2B2AE35) & 0xFFFFFFFF
        x ^= x >> 16
        self._x = x or 0x6D2B79F5  # xorshift never leaves 0

    def __call__(self):
        x = self._x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._x = x
        return x


def uniform_ms(rng, span_ms):
    """An integer uniform in [0, span_ms] from one 32-bit draw."""
    return (rng() * (span_ms + 1)) >> 32


class Backoff:
    """The reconnect policy: what to wait before the next connection attempt.

    The supervisor calls exactly one of these each time it is about to wait:
    `after_boot()` once at start, `after_failure()` when an attempt failed,
    `after_loss(connected_ms)` when an established connection dropped.
    `rng` is a callable returning 32 random bits (default: the system RNG).
    """

    def __init__(self, base_ms=BASE_MS, cap_ms=CAP_MS, initial_window_ms=INITIAL_WINDOW_MS,
                 stable_ms=STABLE_MS, rng=None):
        if not 0 < base_ms <= cap_ms or initial_window_ms < 0 or stable_ms < 0:
            raise ValueError("backoff: need 0 < base <= cap, window >= 0, stable >= 0")
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.initial_window_ms = initial_window_ms
        self.stable_ms = stable_ms
        self.rng = rng or system_rng
        self.attempt = 0

    def initial(self):
        """The random start-up delay, uniform in [0, initial_window]; resets the counter."""
        self.attempt = 0
        return uniform_ms(self.rng, self.initial_window_ms)

    def retry(self):
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)], then attempt += 1."""
        n = self.attempt
        span = self.cap_ms if n >= _MAX_SHIFT else min(self.cap_ms, self.base_ms << n)
        if n < _MAX_SHIFT:
            self.attempt = n + 1
        return uniform_ms(self.rng, span)

    def after_boot(self):
        return self.initial()

    def after_failure(self):
        return self.retry()

    def after_loss(self, connected_ms):
        """A connection that lasted `stable_ms` counts as recovered: start afresh with the
        initial window. A shorter one is one more failure."""
        if connected_ms >= self.stable_ms:
            return self.initial()
        return self.retry()
