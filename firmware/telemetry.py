# Anonymous telemetry (ETSI 4.10-2): what the service may keep about a home's heating, with
# nothing that names the device or links its records across days.
#
# A record goes to telemetry/<product>/<pseudonym>, never to the device's own dev/<id>/
# topics, and carries the pseudonym, an hour-coarse time and the three readings; no device
# id, no sequence number, no exact time. The pseudonym is HMAC-SHA256 of the day number under
# a key derived from the device secret of the factory record (sealed.py), cut to 64 bits: the
# service, which never holds that secret, can group one day's records of one home (daily
# statistics) but cannot invert a pseudonym to a device or link two days. The sampling
# period is jittered by JITTER_PCT so that the phase of a device's timer (visible in arrival
# times) is not a stable fingerprint either. Remote access to the owner's own device stays
# on its authenticated topics (cloud.py: the "read" and "set" commands on dev/<id>/cmd).
# Without a wall-clock time (no day number) nothing is sent.
import binascii
import os

from micropython import const

import sealed

DAY_S = const(86400)
HOURS = const(24)  # coarse time: the start of the record's hour (1/24 of a day)
JITTER_PCT = const(10)
FIELDS = ("p", "t", "temperature", "target", "heating")


class Telemetry:
    """Builds the anonymous records of one device. `day_s` shortens the day for tests (the
    factory record's cloud entry, like its other timings); the coarse unit is day_s / 24."""

    def __init__(self, factory, product, day_s=DAY_S):
        secret = sealed.read_secret(factory)
        self._key = sealed.derive(secret, b"telemetry/day") if secret else None
        self.product = product
        self.day_s = day_s
        self.unit = max(1, day_s // HOURS)
        self._day = None
        self._p = None

    def pseudonym(self, day):
        """The 16-hex-digit pseudonym of day number `day`, or None without a device secret."""
        if self._key is None:
            return None
        if day != self._day:
            d = sealed.hmac_sha256(self._key, b"day:%d" % day)
            self._day, self._p = day, binascii.hexlify(d[:8]).decode()
        return self._p

    def record(self, temperature, target, heating, now):
        """(topic, doc) for one sample at wall-clock `now` (0 = unknown), or None."""
        if not now or temperature is None:
            return None
        p = self.pseudonym(now // self.day_s)
        if p is None:
            return None
        doc = {"p": p, "t": now - now % self.unit, "temperature": round(temperature, 1),
               "target": target, "heating": bool(heating)}
        return "telemetry/%s/%s" % (self.product, p), doc

    @staticmethod
    def period_ms(period_s):
        """The next sampling pause: `period_s` seconds +- JITTER_PCT percent, at random."""
        span = period_s * 10 * JITTER_PCT * 2  # ms: 2 * period * pct / 100 * 1000
        r = int.from_bytes(os.urandom(2), "big") % (span + 1)
        return period_s * 1000 - span // 2 + r
