# Alert-only mode's one message to the cloud (ETSI 4.7-2), and the MQTT 3.1.1 packet encoder.
#
# Known-good code, frozen with the boot stage: when no app slot verifies, the device sends
# one QoS 1 PUBLISH to dev/<id>/alert over mutual TLS (CONNECT, PUBLISH, PUBACK, DISCONNECT
# on a blocking socket) and opens no other connection: no subscription, no telemetry, no
# control. "Sent" is persisted per distinct failure, so a device that keeps rebooting into
# the same failure alerts once. The application's cloud link (firmware/mqtt.py) reuses the
# encoder below, so there is one copy of it.
import binascii
import hashlib
import json
import os
import struct
import time

try:
    from micropython import const
except ImportError:  # CPython can import the encoder
    def const(x):
        return x

_MAX_REMAINING = const(268435455)  # four varint bytes
_TIMEOUT_S = const(10)  # per socket operation
_RETRY_BASE_MS = const(5_000)
_RETRY_CAP_MS = const(600_000)
_MAX_REASONS = const(4)
_MAX_REASON = const(200)
RECORD = "/alert.json"  # under the data root: {"id": failure id, "sent": time}


# ---- packet encoder: pure functions --------------------------------------------------

def _varint(n):
    if not 0 <= n <= _MAX_REMAINING:
        raise ValueError("remaining length out of range")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return out


def _str(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    if len(b) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return struct.pack("!H", len(b)) + b


def _packet(first, body):
    return bytearray(bytes((first,)) + _varint(len(body)) + body)


def _pid(pid):
    if not 0 < pid <= 0xFFFF:
        raise ValueError("packet id must be 1..65535")
    return struct.pack("!H", pid)


def _check_topic(topic):
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise ValueError("bad topic name: %r" % topic)


def connect(client_id, keepalive_s=60, clean=True, username=None, password=None, will=None):
    """CONNECT. `will` is None or (topic, payload, qos, retain)."""
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError("keep-alive must be 0..65535 s")
    if not client_id and not clean:
        raise ValueError("an empty client id needs a clean session")
    if password is not None and username is None:
        raise ValueError("a password needs a user name")
    flags = 0x02 if clean else 0
    tail = _str(client_id)
    if will is not None:
        topic, payload, qos, retain = will
        _check_topic(topic)
        if qos not in (0, 1, 2):
            raise ValueError("will QoS must be 0..2")
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        tail += _str(topic) + _str(payload)
    if username is not None:
        flags |= 0x80
        tail += _str(username)
    if password is not None:
        flags |= 0x40
        tail += _str(password)
    return _packet(0x10, b"\x00\x04MQTT\x04" + bytes((flags,)) + struct.pack("!H", keepalive_s)
                   + tail)


def publish(topic, payload, qos=0, retain=False, pid=0, dup=False):
    """PUBLISH with QoS 0 or 1. Returns a bytearray (its DUP bit can be set in place)."""
    _check_topic(topic)
    if qos not in (0, 1):
        raise ValueError("QoS must be 0 or 1")
    if dup and not qos:
        raise ValueError("DUP is for QoS 1 only")
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = _str(topic) + (_pid(pid) if qos else b"")
    return _packet(first, body + bytes(payload))


def puback(pid):
    return _packet(0x40, _pid(pid))


def disconnect():
    return bytearray(b"\xe0\x00")


# ---- the one alert -------------------------------------------------------------------

class AlertError(Exception):
    """The broker answered, but not with the CONNACK or PUBACK the alert needs."""


def _read_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.read(n - len(out))
        if not chunk:
            raise OSError("connection closed by the broker")
        out += chunk
    return out


def send(host, port, server_hostname, ca_der, cert_der, key_der, client_id, topic, payload,
         timeout_s=_TIMEOUT_S):
    """One connection: CONNECT (clean session, no will), PUBLISH QoS 1, wait for its PUBACK,
    DISCONNECT. The broker must chain to `ca_der` and match `server_hostname`; the device
    proves itself with its certificate. Raises OSError, ValueError (TLS) or AlertError."""
    import socket

    import tlsctx

    ctx = tlsctx.client(ca_der, cert_der, key_der)
    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    sock = socket.socket(ai[0], ai[1], ai[2])
    tls = None
    try:
        sock.settimeout(timeout_s)  # every step is bounded, the handshake included
        sock.connect(ai[-1])
        sock.setsockopt(6, 1, 1)  # TCP_NODELAY
        tls = ctx.wrap_socket(sock, server_hostname=server_hostname)
        tls.write(connect(client_id, keepalive_s=timeout_s * 3))
        ack = _read_exact(tls, 4)
        if ack[:2] != b"\x20\x02" or ack[3]:
            raise AlertError("CONNACK refused or malformed: %s" % binascii.hexlify(ack).decode())
        tls.write(publish(topic, payload, 1, False, 1))
        ack = _read_exact(tls, 4)
        if ack != b"\x40\x02\x00\x01":
            raise AlertError("expected PUBACK 1, got %s" % binascii.hexlify(ack).decode())
        tls.write(disconnect())
    finally:
        (tls or sock).close()


def failure_id(reasons):
    """16 hex digits naming this failure: the same refusal reasons give the same id."""
    h = hashlib.sha256("\n".join(reasons).encode()).digest()
    return binascii.hexlify(h[:8]).decode()


def _read(path, text=False):
    with open(path, "r" if text else "rb") as f:
        return f.read()


class Alert:
    """The alert of one boot into alert-only mode. Call `poll()` from the mode's loop: it
    sends once (first attempt at once, then full-jitter retries up to 10 min apart while the
    broker is unreachable) and never again once the broker has acknowledged this failure.
    `uplink` (station.Uplink) brings the network up for each attempt and down after it."""

    def __init__(self, boot, uplink=None):
        self.boot = boot
        self.uplink = uplink
        self.reasons = [r[:_MAX_REASON] for r in boot.reasons[:_MAX_REASONS]] or [
            "no slot verified"]
        self.id = failure_id(self.reasons)
        self.record = boot.root + RECORD
        self.state = "not configured"
        self.attempts = 0
        self._next = time.ticks_ms()
        self._endpoint = None
        try:
            factory = boot.profile["factory"]
            ident = json.loads(_read(factory + "/identity.json", True))
            cloud = ident.get("cloud")
            if isinstance(cloud, dict) and cloud.get("host") and cloud.get("port"):
                self._endpoint = (factory, ident["device_id"], cloud)
                self.state = "pending"
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no readable factory record: the alert stays local (LED, log)
        if self._endpoint and self._sent():
            self.state = "sent before"
            boot.log("alert: integrity alert %s was delivered before; not sent again" % self.id)

    def _sent(self):
        try:
            return json.loads(_read(self.record, True)).get("id") == self.id
        except (OSError, ValueError, AttributeError):
            return False

    def _remember(self):
        tmp = self.record + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps({"id": self.id, "sent": int(time.time())}))
            os.rename(tmp, self.record)
        except OSError as e:  # a damaged data filesystem: the alert still went out once
            self.boot.log("alert: could not record the alert (%r)" % (e,))

    def payload(self, device_id):
        return json.dumps({"type": "integrity", "id": self.id, "device_id": device_id,
                           "mode": "alert-only", "reasons": self.reasons,
                           "t": int(time.time())}).encode()

    def poll(self):
        """Send if due. Returns the state: pending, sent, sent before, not configured."""
        if self.state != "pending" or time.ticks_diff(time.ticks_ms(), self._next) < 0:
            return self.state
        factory, device_id, cloud = self._endpoint
        self.attempts += 1
        up = self.uplink
        try:
            if up is not None and not up.up(_TIMEOUT_S * 1000):
                raise OSError("no network")
            send(cloud["host"], int(cloud["port"]), cloud.get("name") or cloud["host"],
                 _read(factory + "/ca.crt.der"), _read(factory + "/device.crt.der"),
                 _read(factory + "/device.key.der"), device_id,
                 "dev/%s/alert" % device_id, self.payload(device_id))
        except (OSError, ValueError, AlertError) as e:
            span = min(_RETRY_CAP_MS, _RETRY_BASE_MS << min(self.attempts, 8))
            b = os.urandom(2)
            wait = span * ((b[0] << 8) | b[1]) // 65536  # full jitter
            self._next = time.ticks_add(time.ticks_ms(), wait)
            self.boot.log("alert: not delivered (%r); next attempt in %d ms" % (e, wait))
            return self.state
        finally:
            if up is not None:
                up.down()
        self._remember()
        self.state = "sent"
        self.boot.log("alert: integrity alert %s delivered to %s:%s"
                      % (self.id, cloud["host"], cloud["port"]))
        return self.state
