# Device side of test_byte_fuzz: byte-level inputs to the parsers that take bytes from outside,
# on the verified slot of a provisioned simulated device (fuzzio.device). Frames on stdin as
# "<length>\n<bytes>"; the first byte of a frame names the target, the rest is the input:
#   m  what a hostile broker sends after the client's CONNECT (over loopback TCP to
#      firmware/mqtt.py's Client: connect, CONNACK, the reader, PUBACKs, the inbox)
#   b  an update stream, fed to the boot stage's installer in chunks of the 2nd byte + 1
#   a  /factory/anchors.json for the boot stage (bootstage.load_anchors)
#   p  /factory/password.json (credentials.check_record)
#   i  /factory/identity.json's cloud entry (cloud.config)
# One JSON line out per frame: {"x": crash or null, "v": the outcome, "c": stored state
# changed}. Stored state = every file on the data filesystem except the inactive slot (an
# update writes there before its verdict, and abort() removes it) and the login throttle.
#   micropython byte_fuzz.py SIMDIR PORT   (PORT: a free loopback port for the broker)
import asyncio
import json
import socket
import sys

from fuzzio import device, digest, read_frame

dev, fl = device(sys.argv[1])
import cloud  # noqa: E402 (after the slot is on the path)
import mqtt  # noqa: E402
from bootstage import load_anchors  # noqa: E402
from bundle import Reject  # noqa: E402
from credentials import CredentialError, check_record  # noqa: E402

boot = dev.boot
INACTIVE = "b" if boot.slot == "a" else "a"
SKIP = (INACTIVE, "throttle.json")
_TMP = sys.argv[1] + "/fuzz.json"  # a factory record under test (on the host's disk)


class BrokerClient(mqtt.Client):
    """The product's Client over plain loopback TCP to the in-process hostile broker (TLS
    is not what is under test: the bytes after it are)."""

    async def _open(self):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(self.addr)
        except OSError as e:
            if e.errno != 115:  # EINPROGRESS
                raise
        return s


class Broker:
    def __init__(self):
        self.script = b""

    async def handle(self, reader, writer):
        try:
            await reader.read(64)  # the client's CONNECT
            writer.write(self.script)
            await writer.drain()
            await asyncio.sleep_ms(2)
        except OSError:
            pass
        writer.close()
        await writer.wait_closed()


async def mqtt_stream(broker, addr, data):
    broker.script = data
    c = BrokerClient("fuzz", "127.0.0.1", 0, mqtt_ctx, timeout_ms=500, keepalive_s=0,
                     inbox_len=4)
    c.addr = addr
    try:
        await c.connect()
    except (OSError, mqtt.MQTTError, asyncio.TimeoutError) as e:
        return "refused: " + type(e).__name__
    await asyncio.wait_for_ms(c.wait_lost(), 3000)
    if len(c._inbox) > 4 or c.connected:
        raise AssertionError("inbox over its bound or still connected after the broker left")
    return "%d messages, %s" % (len(c._inbox) + c.dropped, type(c.last_error).__name__)


def update_stream(data):
    if not data:
        return "empty"
    chunk = data[0] + 1
    inst = boot.installer(now=0)
    mv = memoryview(data)[1:]
    try:
        for i in range(0, len(mv), chunk):
            inst.feed(mv[i:i + chunk])
        inst.finish()
        return "ACCEPTED"
    except Reject as e:
        return e.verdict
    finally:
        inst.abort()


def record(kind, data):
    with open(_TMP, "wb") as f:
        f.write(data)
    try:
        if kind == "a":
            load_anchors(_TMP)
        elif kind == "p":
            with open(_TMP) as f:
                check_record(json.load(f), "k7pq-m2wx-9dfh-tr4e")
        else:
            with open(_TMP) as f:
                cloud.config(json.load(f))
        return "accepted"
    except (OSError, ValueError, KeyError, CredentialError) as e:
        # What each caller handles: load_anchors' in bootstage.start, the others' in
        # Credentials and cloud.start.
        return "refused: " + type(e).__name__


async def main():
    global mqtt_ctx
    import ssl

    mqtt_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    mqtt_ctx.verify_mode = ssl.CERT_REQUIRED  # the Client insists; plain TCP underneath
    broker = Broker()
    port = int(sys.argv[2])
    await asyncio.start_server(broker.handle, "127.0.0.1", port)
    addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
    print(json.dumps({"ready": True}))
    state = digest("/data", SKIP).digest()
    stdin = sys.stdin.buffer
    while True:
        frame = read_frame(stdin)
        if frame is None:
            break
        kind, data = chr(frame[0]), frame[1:]
        ops = fl.ops
        crash = v = None
        try:
            if kind == "m":
                v = await mqtt_stream(broker, addr, data)
            elif kind == "b":
                v = update_stream(data)
            else:
                v = record(kind, data)
        except Exception as e:  # the point is to catch what the code did not
            crash = repr(e)
        changed = False
        if fl.ops != ops and kind == "b":
            now = digest("/data", SKIP).digest()
            changed = now != state
            state = now
        print(json.dumps({"x": crash, "v": v, "c": changed}))


asyncio.run(main())
