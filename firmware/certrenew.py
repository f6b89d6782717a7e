# Renewal of the device certificate over the cloud link. Once 80 % of the certificate's
# lifetime has passed, the device asks the service (event "cert_renew", carrying its current
# certificate) over its mutual-TLS session: the broker let only the holder of that
# certificate's key publish on dev/<id>/events, which is the proof of possession. The service
# answers with the command {"cmd": "cert", "cert": base64 DER}: a certificate for the same key
# and name. The device keeps it beside the one in force (data/cloud/cert.new.der, written to
# a temporary name and renamed) and connects with it; once the broker has accepted it once
# it replaces the old one (data/cloud/cert.der; the factory certificate stays as it was).
# If the broker does not take it, the device goes back to the old certificate.
import asyncio
import binascii
import json
import os

from micropython import const

import files

RENEW_PERCENT = const(80)
TRY_MS = const(60_000)  # a new certificate the broker has not taken by then is given up
MAX_CERT = const(2048)
DIR = "/cloud"  # under the data root


def _tlv(b, i):
    """(tag, start of the value, end of the value) of the DER element at `i`."""
    if i + 2 > len(b):
        raise ValueError("truncated DER")
    tag, n = b[i], b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        if not 0 < k <= 3 or i + k > len(b):
            raise ValueError("bad DER length")
        n = int.from_bytes(bytes(b[i:i + k]), "big")
        i += k
    if i + n > len(b):
        raise ValueError("truncated DER")
    return tag, i, i + n


def _days(y, m, d):
    """Days since 1970-01-01 of a civil date (proleptic Gregorian)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _time(tag, v):
    s = bytes(v).decode()
    if tag == 0x17 and len(s) == 13:  # UTCTime YYMMDDHHMMSSZ
        y = int(s[:2])
        y += 2000 if y < 50 else 1900
        s = s[2:]
    elif tag == 0x18 and len(s) == 15:  # GeneralizedTime YYYYMMDDHHMMSSZ
        y = int(s[:4])
        s = s[4:]
    else:
        raise ValueError("unsupported certificate time")
    if s[-1] != "Z" or not s[:-1].isdigit():
        raise ValueError("bad certificate time")
    return (_days(y, int(s[:2]), int(s[2:4])) * 86400 + int(s[4:6]) * 3600
            + int(s[6:8]) * 60 + int(s[8:10]))


def fields(der):
    """{"issuer", "subject", "spki" (DER bytes), "not_before", "not_after" (Unix time)} of a
    certificate; ValueError when it is not one."""
    t, s, _ = _tlv(der, 0)
    t2, i, _ = _tlv(der, s)
    if t != 0x30 or t2 != 0x30:
        raise ValueError("not a certificate")
    t, _, e = _tlv(der, i)
    if t == 0xA0:  # version
        i = e
    _, _, i = _tlv(der, i)  # serial number
    _, _, i = _tlv(der, i)  # signature algorithm
    _, _, e = _tlv(der, i)
    issuer = bytes(der[i:e])
    i = e
    t, vs, i = _tlv(der, i)  # validity
    t1, a, b = _tlv(der, vs)
    t2, c, d = _tlv(der, b)
    nb, na = _time(t1, der[a:b]), _time(t2, der[c:d])
    _, _, e = _tlv(der, i)
    subject = bytes(der[i:e])
    i = e
    _, _, e = _tlv(der, i)
    return {"issuer": issuer, "subject": subject, "spki": bytes(der[i:e]),
            "not_before": nb, "not_after": na}


def due(f, now):
    """True once RENEW_PERCENT of the certificate's lifetime has passed (clock set)."""
    return bool(now) and now >= f["not_before"] + (f["not_after"] - f["not_before"]) \
        * RENEW_PERCENT // 100


def request(der):
    return {"type": "cert_renew", "cert": binascii.b2a_base64(der).decode().strip()}


def check(cur, b64):
    """The DER of a renewed certificate sent by the service, once it matches the one in
    force: same key, subject and issuer, a later expiry. Raises ValueError."""
    if not isinstance(b64, str) or len(b64) > MAX_CERT * 4 // 3 + 4:
        raise ValueError("cert must be base64 DER of at most %d bytes" % MAX_CERT)
    try:
        der = binascii.a2b_base64(b64)
    except ValueError:
        raise ValueError("cert is not base64")
    new = fields(der)
    if new["spki"] != cur["spki"]:
        raise ValueError("the certificate is not for this device's key")
    if new["subject"] != cur["subject"] or new["issuer"] != cur["issuer"]:
        raise ValueError("the certificate names another subject or issuer")
    if new["not_after"] <= cur["not_after"]:
        raise ValueError("the certificate does not expire later than the one in force")
    return der


class Certs:
    """Which certificate the link presents: the renewed one (data/cloud/cert.der) or the
    factory's, and a new one on its first try (cert.new.der)."""

    def __init__(self, data_root, factory):
        self.dir = data_root + DIR
        self.factory = factory + "/device.crt.der"
        self.renewed = self.dir + "/cert.der"
        self.new = self.dir + "/cert.new.der"

    @staticmethod
    def _read(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return None

    def current(self):
        """The certificate in force (DER)."""
        return self._read(self.renewed) or self._read(self.factory)

    def pending(self):
        return self._read(self.new)

    def renewed_in_force(self):
        return self._read(self.renewed) is not None

    def keep(self, der):
        """Store a new certificate for its first try (atomic)."""
        try:
            os.mkdir(self.dir)
        except OSError:
            pass
        files.write(self.new, der)

    def promote(self):
        """The new certificate was accepted once: it replaces the old (atomic rename)."""
        os.rename(self.new, self.renewed)

    def drop(self):
        try:
            os.remove(self.new)
        except OSError:
            pass


class Renewal:
    """The renewal as the cloud link (cloud.Cloud `c`) runs it."""

    def __init__(self, c):
        self.c = c
        self.certs = Certs(c.dev.data, c.dev.factory)
        # A renewed certificate not yet accepted by the broker is tried first (TRY_MS).
        self.trying = self.certs.pending()

    def tls_context(self, der):
        import tlsctx

        f = self.c.dev.factory
        with open(f + "/ca.crt.der", "rb") as fh:
            ca = fh.read()
        with open(f + "/device.key.der", "rb") as fh:
            key = fh.read()
        return tlsctx.client(ca, der, key)  # the device's one TLS policy

    async def run(self):
        if self.trying:
            asyncio.create_task(self._watch())
        while True:
            await asyncio.sleep_ms(self.c.settings["renew_check_s"] * 1000)
            if self.c.link.is_up:
                await self.request_if_due()

    async def request_if_due(self):
        """Ask the service for a new certificate once 80 % of this one's lifetime has
        passed (again at every connect and every renew_check_s until it comes)."""
        import mqtt

        if self.trying:
            return
        der = self.certs.current()
        try:
            if not due(fields(der), self.c.dev.clock()):
                return
        except (ValueError, TypeError) as e:
            self.c.log("cloud: certificate unreadable (%s); no renewal" % e)
            return
        doc = request(der)
        doc["t"] = self.c.dev.clock()
        try:  # not through the outbox: it only makes sense on a live session
            await self.c.link.publish(self.c.t_events, json.dumps(doc).encode(), 1)
            self.c.log("cloud: certificate renewal requested")
        except (mqtt.MQTTError, ValueError) as e:
            self.c.log("cloud: renewal request not sent (%r)" % (e,))

    def take(self, b64):
        """The service sent a renewed certificate (the "cert" command): checked, kept beside
        the old one, and tried on a new connection at once. Raises ValueError, OSError."""
        der = check(fields(self.certs.current()), b64)
        self.certs.keep(der)
        self.trying = der
        self.c.client.use_tls(self.tls_context(der))
        asyncio.create_task(self._watch())

        async def _reconnect():
            await asyncio.sleep_ms(500)  # the command's result goes out on this session
            self.c.client.close()
        asyncio.create_task(_reconnect())

    def connected(self):
        """The link is up: a certificate on its first try was accepted; it replaces the old."""
        der, self.trying = self.trying, None
        if der is None:
            return
        try:
            self.certs.promote()
        except OSError as e:
            self.c.log("cloud: renewed certificate not kept (%r)" % (e,))
            return
        na = fields(der)["not_after"]
        self.c.log("cloud: renewed certificate in use (until %d)" % na)
        self.c.event({"type": "cert_renewed", "ok": True, "not_after": na})

    async def _watch(self):
        der = self.trying
        await asyncio.sleep_ms(TRY_MS)
        if der is not None and self.trying is der:  # never accepted: back to the old one
            self.trying = None
            self.certs.drop()
            self.c.client.use_tls(self.tls_context(self.certs.current()))
            self.c.log("cloud: the broker did not take the renewed certificate; old one kept")
            self.c.event({"type": "cert_renewed", "ok": False,
                          "error": repr(self.c.link.last_error)[:120]})

    def status(self):
        try:
            f = fields(self.trying or self.certs.current())
        except (ValueError, TypeError):
            return None
        return {"not_before": f["not_before"], "not_after": f["not_after"],
                "renewed": self.certs.renewed_in_force(), "trying": self.trying is not None}
