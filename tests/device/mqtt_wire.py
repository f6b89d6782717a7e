# Device side of test_mqtt: the exact bytes of every packet the client sends, and what the
# decoder makes of what a broker sends (good, malformed, oversize, incomplete).
# Usage: micropython mqtt_wire.py   (firmware/ on MICROPYPATH); prints OK.
import mqtt
import mqttwire
from mqtt import ProtocolError


def raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised by %r%r" % (exc.__name__, fn, args))


# CONNECT: protocol name and level 4, flags, keep-alive, then the payload fields in order.
assert mqtt.connect("dev", 60) == \
    b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03dev"
assert mqtt.connect("dev", 30, clean=False, username="u", password=b"p",
                    will=("s/d", b"gone", 1, True)) == \
    b"\x10\x20\x00\x04MQTT\x04\xec\x00\x1e\x00\x03dev\x00\x03s/d\x00\x04gone\x00\x01u\x00\x01p"
assert mqtt.connect("dev", 0, will=("s/d", b"", 0, False)) == \
    b"\x10\x16\x00\x04MQTT\x04\x06\x00\x00\x00\x03dev\x00\x03s/d\x00\x00"
assert mqtt.connect("", 60, username="device-1") == \
    b"\x10\x16\x00\x04MQTT\x04\x82\x00\x3c\x00\x00\x00\x08device-1"
raises(ValueError, mqtt.connect, "", 60, clean=False)  # empty id needs a clean session
raises(ValueError, mqtt.connect, "dev", 60, password=b"p")  # password without user name
raises(ValueError, mqtt.connect, "dev", 65536)
raises(ValueError, mqtt.connect, "dev", 60, will=("s/#", b"", 0, False))
raises(ValueError, mqtt.connect, "dev", 60, will=("s", b"", 3, False))

# PUBLISH: QoS 0 has no packet id; QoS 1 does; retain is bit 0, DUP bit 3.
assert mqtt.publish("a/b", b"hi") == b"\x30\x07\x00\x03a/b" + b"hi"
assert mqtt.publish("a/b", b"hi", retain=True) == b"\x31\x07\x00\x03a/bhi"
assert mqtt.publish("a/b", b"hi", 1, pid=10) == b"\x32\x09\x00\x03a/b\x00\x0ahi"
assert mqtt.publish("a/b", b"hi", 1, True, 10) == b"\x33\x09\x00\x03a/b\x00\x0ahi"
assert mqtt.publish("a/b", b"hi", 1, pid=0xFFFF, dup=True) == b"\x3a\x09\x00\x03a/b\xff\xffhi"
assert mqtt.publish("a/b", b"") == b"\x30\x05\x00\x03a/b"
assert mqtt.publish("a/b", b"x" * 200) == b"\x30\xcd\x01\x00\x03a/b" + b"x" * 200
assert mqtt.publish("\u00e9", b"") == b"\x30\x04\x00\x02\xc3\xa9"
raises(ValueError, mqtt.publish, "a/+", b"")
raises(ValueError, mqtt.publish, "a/#", b"")
raises(ValueError, mqtt.publish, "", b"")
raises(ValueError, mqtt.publish, "a", b"", 2, pid=1)  # QoS 2 is not supported
raises(ValueError, mqtt.publish, "a", b"", 1)  # QoS 1 needs a packet id
raises(ValueError, mqtt.publish, "a", b"", 0, dup=True)

# The acks, SUBSCRIBE / UNSUBSCRIBE (reserved flags 0010), PINGREQ, DISCONNECT.
assert mqtt.puback(10) == b"\x40\x02\x00\x0a"
assert mqtt.subscribe(1, [("c/#", 1)]) == b"\x82\x08\x00\x01\x00\x03c/#\x01"
assert mqtt.subscribe(258, [("c/+", 0), ("d", 1)]) == \
    b"\x82\x0c\x01\x02\x00\x03c/+\x00\x00\x01d\x01"
assert mqtt.unsubscribe(2, ["c/#"]) == b"\xa2\x07\x00\x02\x00\x03c/#"
assert mqtt.unsubscribe(3, ["a", "b"]) == b"\xa2\x08\x00\x03\x00\x01a\x00\x01b"
assert mqtt.pingreq() == b"\xc0\x00"
assert mqtt.disconnect() == b"\xe0\x00"
raises(ValueError, mqtt.subscribe, 1, [("c", 2)])
raises(ValueError, mqtt.subscribe, 1, [])
raises(ValueError, mqtt.puback, 0)
raises(ValueError, mqtt.puback, 65536)

# Remaining length: the boundary values of the spec's table, both ways.
for n, enc in ((0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
               (16384, b"\x80\x80\x01"), (2097151, b"\xff\xff\x7f"),
               (2097152, b"\x80\x80\x80\x01"), (268435455, b"\xff\xff\xff\x7f")):
    assert mqttwire.varint(n) == enc, n
    assert mqtt.header(b"\x30" + enc, 268435455) == (0x30, n, 1 + len(enc)), n
raises(ValueError, mqttwire.varint, 268435456)
raises(ValueError, mqttwire.varint, -1)

# Decoding what a broker sends.
D = mqtt.decode
assert D(b"\x20\x02\x00\x00") == ((mqtt.CONNACK, False, 0), 4)
assert D(b"\x20\x02\x01\x00") == ((mqtt.CONNACK, True, 0), 4)
assert D(b"\x20\x02\x00\x05") == ((mqtt.CONNACK, False, 5), 4)
assert D(b"\x30\x05\x00\x03a/b") == ((mqtt.PUBLISH, "a/b", b"", 0, False, False, 0), 7)
assert D(b"\x33\x09\x00\x03a/b\x00\x07hi") == \
    ((mqtt.PUBLISH, "a/b", b"hi", 1, True, False, 7), 11)
assert D(b"\x3a\x09\x00\x03a/b\x00\x07hi") == \
    ((mqtt.PUBLISH, "a/b", b"hi", 1, False, True, 7), 11)
assert D(b"\x40\x02\x00\x07") == ((mqtt.PUBACK, 7), 4)
assert D(b"\x90\x03\x00\x01\x01") == ((mqtt.SUBACK, 1, b"\x01"), 5)
assert D(b"\x90\x04\x00\x01\x00\x80") == ((mqtt.SUBACK, 1, b"\x00\x80"), 6)
assert D(b"\xb0\x02\x00\x02") == ((mqtt.UNSUBACK, 2), 4)
assert D(b"\xd0\x00") == ((mqtt.PINGRESP,), 2)
assert D(b"\xd0\x00\xd0\x00") == ((mqtt.PINGRESP,), 2)  # one packet at a time
# Incomplete input: None, never an error.
for part in (b"", b"\x30", b"\x30\x80", b"\x30\x80\x80\x80", b"\x30\x05\x00\x03a/",
             b"\x20\x02\x00"):
    assert D(part) is None, part

MALFORMED = (
    b"\x20\x03\x00\x00\x00",  # CONNACK of the wrong length
    b"\x20\x02\x02\x00",  # reserved acknowledge flag
    b"\x21\x02\x00\x00",  # reserved header flags
    b"\x20\x02\x00\x06",  # return code past the table
    b"\x20\x02\x01\x05",  # session present with a refusal
    b"\x34\x07\x00\x03a/b\x00\x01",  # QoS 2: never subscribed to
    b"\x36\x07\x00\x03a/b\x00\x01",  # QoS 3
    b"\x38\x05\x00\x03a/b",  # DUP on QoS 0
    b"\x30\x03\x00\x05a",  # topic longer than the packet
    b"\x32\x05\x00\x03a/b",  # QoS 1 without packet id
    b"\x32\x07\x00\x03a/b\x00\x00",  # packet id 0
    b"\x30\x05\x00\x03a/+",  # wildcard in a topic name
    b"\x30\x02\x00\x00",  # empty topic
    b"\x30\x05\x00\x03a\x00b",  # NUL in a topic
    b"\x30\x04\x00\x02\xff\xfe",  # not UTF-8
    b"\x30\x01\x00",  # too short for a topic length
    b"\x40\x02\x00\x00",  # PUBACK for packet id 0
    b"\x40\x03\x00\x01\x00",  # PUBACK of the wrong length
    b"\x42\x02\x00\x01",  # PUBACK with flags
    b"\x90\x02\x00\x01",  # SUBACK without return codes
    b"\x90\x03\x00\x01\x03",  # SUBACK code 3
    b"\x90\x03\x00\x00\x00",  # SUBACK packet id 0
    b"\xb0\x03\x00\x02\x00",  # UNSUBACK of the wrong length
    b"\xd0\x01\x00",  # PINGRESP with a body
    b"\x10\x00", b"\x50\x02\x00\x01", b"\x62\x02\x00\x01", b"\x70\x02\x00\x01",
    b"\x82\x00", b"\xa2\x00", b"\xc0\x00", b"\xe0\x00", b"\xf0\x00", b"\x00\x00",
    b"\x30\xff\xff\xff\xff\x01",  # length field of five bytes
    b"\x30\xff\xff\xff\x7f",  # 256 MiB announced: refused from the header alone
    b"\x30\x81\x80\x01",  # 16385 > the 16 KiB default
)
for bad in MALFORMED:
    e = raises(ProtocolError, D, bad)
    assert str(e), bad
assert mqtt.header(b"\x30\x80\x80\x01") == (0x30, 16384, 4)  # exactly the limit
raises(ProtocolError, mqtt.header, b"\x30\x81\x01", 128)  # a configured limit

# CONNACK codes map to clear errors.
assert str(mqtt.ConnectRefused(5)) == "connection refused: not authorized (5)"
assert str(mqtt.ConnectRefused(4)) == "connection refused: bad user name or password (4)"
assert mqtt.ConnectRefused(3).code == 3
print("OK")
