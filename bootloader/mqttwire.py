# MQTT 3.1.1 packets: the one codec of the device, pure functions (bytes in, bytes or tuples
# out). In the boot stage because alert-only mode (cloudalert.py) sends its one alert with
# it; the app's cloud link (firmware/mqtt.py) uses the same functions for everything else.
# The decoder bounds every length it reads and raises ProtocolError on anything a broker
# must not send. QoS 2 is not supported: subscriptions ask for at most QoS 1.
import struct

try:
    from micropython import const
except ImportError:  # CPython can import the codec (with bootloader/ on the path)
    def const(x):
        return x

CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBSCRIBE = const(10)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

MAX_PACKET = const(16384)  # default bound on the remaining length of a received packet
_MAX_REMAINING = const(268435455)  # four varint bytes
CONNECT_REFUSED = (None, "unacceptable protocol version", "client identifier rejected",
                   "server unavailable", "bad user name or password", "not authorized")


class MQTTError(Exception):
    """Base of the MQTT errors (the app's client adds its own under it)."""


class ProtocolError(MQTTError):
    """The broker sent something malformed, oversize or not allowed in MQTT 3.1.1."""


# ---- encoder -------------------------------------------------------------------------

def varint(n):
    """The remaining-length field for `n` (1 to 4 bytes)."""
    if not 0 <= n <= _MAX_REMAINING:
        raise ValueError("remaining length out of range")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return out


def string(s):
    """A length-prefixed UTF-8 string (str or bytes)."""
    b = s.encode() if isinstance(s, str) else bytes(s)
    if len(b) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return struct.pack("!H", len(b)) + b


def packet(first, body):
    """A whole packet: first byte, remaining length, `body`."""
    return bytearray(bytes((first,)) + varint(len(body)) + body)


def packet_id(pid):
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
    tail = string(client_id)
    if will is not None:
        topic, payload, qos, retain = will
        _check_topic(topic)
        if qos not in (0, 1, 2):
            raise ValueError("will QoS must be 0..2")
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        tail += string(topic) + string(payload)
    if username is not None:
        flags |= 0x80
        tail += string(username)
    if password is not None:
        flags |= 0x40
        tail += string(password)
    return packet(0x10, b"\x00\x04MQTT\x04" + bytes((flags,)) + struct.pack("!H", keepalive_s)
                  + tail)


def publish(topic, payload, qos=0, retain=False, pid=0, dup=False):
    """PUBLISH with QoS 0 or 1. Returns a bytearray (its DUP bit can be set in place)."""
    _check_topic(topic)
    if qos not in (0, 1):
        raise ValueError("QoS must be 0 or 1")
    if dup and not qos:
        raise ValueError("DUP is for QoS 1 only")
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = string(topic) + (packet_id(pid) if qos else b"")
    return packet(first, body + bytes(payload))


def puback(pid):
    return packet(0x40, packet_id(pid))


def subscribe(pid, topics):
    """SUBSCRIBE to [(filter, qos), ...] with QoS 0 or 1 each."""
    if not topics:
        raise ValueError("SUBSCRIBE needs at least one filter")
    body = packet_id(pid)
    for flt, qos in topics:
        if not flt or qos not in (0, 1):
            raise ValueError("bad subscription: %r %r" % (flt, qos))
        body += string(flt) + bytes((qos,))
    return packet(0x82, body)


def unsubscribe(pid, filters):
    if not filters:
        raise ValueError("UNSUBSCRIBE needs at least one filter")
    body = packet_id(pid)
    for flt in filters:
        body += string(flt)
    return packet(0xA2, body)


def pingreq():
    return bytearray(b"\xc0\x00")


def disconnect():
    return bytearray(b"\xe0\x00")


# ---- decoder -------------------------------------------------------------------------

def header(buf, max_packet=MAX_PACKET):
    """Parse a fixed header at the start of `buf`.

    Returns (first byte, remaining length, header size), or None when `buf` is too short
    to tell. Raises ProtocolError for a length field over four bytes or a remaining length
    over `max_packet`, before anything of that size is read or allocated.
    """
    n = 0
    for i in range(1, 5):
        if i >= len(buf):
            return None
        b = buf[i]
        n |= (b & 0x7F) << (7 * (i - 1))
        if not b & 0x80:
            if n > max_packet:
                raise ProtocolError("packet of %d bytes over the %d byte limit" % (n, max_packet))
            return buf[0], n, i + 1
    raise ProtocolError("remaining length field longer than 4 bytes")


def _need(cond, what):
    if not cond:
        raise ProtocolError(what)


def parse(first, body):
    """Decode one packet a broker may send, from its first byte and its body.

    Returns (CONNACK, session_present, code), (PUBLISH, topic, payload, qos, retain, dup,
    pid), (PUBACK, pid), (SUBACK, pid, codes), (UNSUBACK, pid) or (PINGRESP,).
    Anything else, and any field out of its range, raises ProtocolError.
    """
    kind = first >> 4
    flags = first & 0x0F
    n = len(body)
    if kind == PUBLISH:
        qos = (flags >> 1) & 3
        _need(qos < 2, "PUBLISH with QoS %d" % qos)  # we never subscribe above QoS 1
        _need(qos or not flags & 0x08, "DUP on a QoS 0 PUBLISH")
        _need(n >= 2, "PUBLISH too short")
        tlen = (body[0] << 8) | body[1]
        end = 2 + tlen
        _need(end + (2 if qos else 0) <= n, "PUBLISH topic overruns the packet")
        raw = bytes(body[2:end])
        try:
            topic = raw.decode()
        except ValueError:  # UnicodeError on MicroPython
            raise ProtocolError("PUBLISH topic is not UTF-8")
        _need(topic and "\x00" not in topic and "+" not in topic and "#" not in topic,
              "bad PUBLISH topic")
        pid = 0
        if qos:
            pid = (body[end] << 8) | body[end + 1]
            _need(pid, "PUBLISH with packet id 0")
            end += 2
        return (PUBLISH, topic, bytes(body[end:]), qos, bool(flags & 1), bool(flags & 8), pid)
    _need(flags == 0, "reserved flags set in packet type %d" % kind)
    if kind == CONNACK:
        _need(n == 2 and body[0] < 2 and body[1] < len(CONNECT_REFUSED)
              and not (body[0] and body[1]), "malformed CONNACK")
        return (CONNACK, bool(body[0]), body[1])
    if kind in (PUBACK, UNSUBACK):
        _need(n == 2, "malformed ack")
        pid = (body[0] << 8) | body[1]
        _need(pid, "ack with packet id 0")
        return (kind, pid)
    if kind == SUBACK:
        _need(n >= 3, "SUBACK too short")
        pid = (body[0] << 8) | body[1]
        _need(pid, "SUBACK with packet id 0")
        codes = bytes(body[2:])
        for c in codes:
            _need(c in (0, 1, 2, 0x80), "SUBACK return code 0x%02x" % c)
        return (SUBACK, pid, codes)
    if kind == PINGRESP:
        _need(n == 0, "PINGRESP with a body")
        return (PINGRESP,)
    raise ProtocolError("unexpected packet type %d from the broker" % kind)


def decode(buf, max_packet=MAX_PACKET):
    """Decode the first packet in `buf`: (packet, bytes used), or None if incomplete."""
    h = header(buf, max_packet)
    if h is None:
        return None
    first, n, size = h
    if len(buf) < size + n:
        return None
    return parse(first, memoryview(buf)[size:size + n]), size + n
