# Alert-only mode's one message to the cloud (ETSI 4.7-2).
#
# Known-good code, frozen with the boot stage: when no app slot verifies, the device sends
# one QoS 1 PUBLISH to dev/<id>/alert over mutual TLS (CONNECT, PUBLISH, PUBACK, DISCONNECT
# on a blocking socket) and opens no other connection: no subscription, no telemetry, no
# control. "Sent" is persisted per distinct failure, so a device that keeps rebooting into
# the same failure alerts once. The packets come from mqttwire.py, the device's one MQTT
# codec, which the application's cloud link (firmware/mqtt.py) uses too.
import binascii
import hashlib
import json
import os
import time

from micropython import const

import files

_TIMEOUT_S = const(10)  # per socket operation
_RETRY_BASE_MS = const(5_000)
_RETRY_CAP_MS = const(600_000)
_MAX_REASONS = const(4)
_MAX_REASON = const(200)
RECORD = "/alert.json"  # under the data root: {"id": failure id, "sent": time}


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
    from mqttwire import connect, disconnect, publish

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
        try:
            files.write_json(self.record, {"id": self.id, "sent": int(time.time())})
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
