# Device side of test_mqtt: the Client and the Link against a scripted in-process broker.
# Exact bytes on the wire for what only a fake broker can provoke: a QoS 1 publish sent
# again with DUP after a reconnect, keep-alive pings and a silent broker, oversize and
# malformed input, refusals, the inbox bound, and the Link's backoff schedule.
# Usage: micropython mqtt_fake.py PORT   (firmware/ on MICROPYPATH); prints OK.
import asyncio
import errno
import socket
import ssl
import sys
import time

import mqtt
import mqttlink
from backoff import Backoff, XorShift32

PORT = int(sys.argv[1])


class PlainClient(mqtt.Client):
    """Test only: plain TCP to the fake broker below (the product's _open is always TLS)."""

    async def _open(self):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(socket.getaddrinfo("127.0.0.1", PORT)[0][-1])
        except OSError as e:
            if e.errno != errno.EINPROGRESS:
                raise
        return s


def ctx():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.verify_mode = ssl.CERT_REQUIRED
    return c


def client(**kw):
    return PlainClient("fake-1", "127.0.0.1", PORT, ctx(), **kw)


async def recv(r):
    """One raw packet from the client."""
    first = await r.readexactly(1)
    length = b""
    n = shift = 0
    while True:
        b = await r.readexactly(1)
        length += b
        n |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    return first + length + (await r.readexactly(n) if n else b"")


async def send(w, data):
    w.write(data)
    await w.drain()


async def hangup(w):
    w.close()
    await w.wait_closed()


class Broker:
    """Runs `session(reader, writer, n)` for the n-th connection (from 1)."""

    def __init__(self):
        self.session = None
        self.n = 0

    def use(self, session):
        self.session = session
        self.n = 0

    async def accept(self, r, w):
        self.n += 1
        try:
            await self.session(r, w, self.n)
        except (OSError, EOFError):
            pass
        await hangup(w)


async def until(pred, ms=3000):
    t0 = time.ticks_ms()
    while not pred():
        if time.ticks_diff(time.ticks_ms(), t0) > ms:
            raise AssertionError("timed out")
        await asyncio.sleep_ms(5)


async def expect_raise(exc, coro):
    try:
        await coro
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


CONNECT = mqtt.connect("fake-1", 60)
CONNACK = b"\x20\x02\x00\x00"


async def dup_after_reconnect(broker):
    got = []

    async def session(r, w, n):
        got.append(await recv(r))
        await send(w, CONNACK)
        if n == 1:
            got.append(await recv(r))  # the publish; then vanish without PUBACK
            return
        got.append(await recv(r))
        got.append(await recv(r))
        await send(w, b"\x40\x02\x00\x01\x40\x02\x00\x02")
        await asyncio.sleep(5)

    broker.use(session)
    c = client()
    assert await c.connect() is False
    assert await c.publish("t", b"1", 1) == 1
    await asyncio.wait_for_ms(c.wait_lost(), 2000)
    assert await c.publish("t", b"2", 1) == 2  # offline: queued
    assert c.inflight == [1, 2]
    await c.connect()
    await asyncio.wait_for_ms(c.wait_acked(2), 2000)
    assert c.inflight == []
    assert got == [CONNECT, b"\x32\x06\x00\x01t\x00\x011",
                   CONNECT, b"\x3a\x06\x00\x01t\x00\x011",  # DUP: it may have arrived
                   b"\x32\x06\x00\x01t\x00\x022"], got  # never sent before: no DUP
    await expect_raise(mqtt.Full, _fill(c))
    c.close()


async def _fill(c):
    for _ in range(c.max_inflight + 1):
        await c.publish("t", b"x", 1)


async def keepalive(broker):
    got = []

    async def session(r, w, n):
        assert await recv(r) == mqtt.connect("fake-1", 1)
        await send(w, CONNACK)
        got.append((await recv(r), time.ticks_ms()))
        await send(w, b"\xd0\x00")
        got.append((await recv(r), time.ticks_ms()))  # and now stay silent
        await asyncio.sleep(5)

    broker.use(session)
    c = client(keepalive_s=1)
    await c.connect()
    t0 = time.ticks_ms()
    await asyncio.wait_for_ms(c.wait_lost(), 3000)
    gone = time.ticks_diff(time.ticks_ms(), t0)
    assert [g[0] for g in got] == [b"\xc0\x00", b"\xc0\x00"], got
    first = time.ticks_diff(got[0][1], t0)
    assert 450 <= first <= 1500, first  # idle for half the keep-alive
    assert c.pings == 2 and c.pongs == 1, (c.pings, c.pongs)
    assert "keep-alive" in str(c.last_error), c.last_error
    assert 1400 <= gone <= 3500, gone  # no reply for one keep-alive after the PINGRESP


async def hostile(broker):
    # Oversize, over-long length, QoS 2, garbage: each drops the connection with a
    # ProtocolError; this script runs with a small heap, so an allocation of the
    # announced size would fail with MemoryError instead.
    bad = [b"\x30\xff\xff\xff\x7f", b"\x30\xff\xff\xff\xff\x01", b"\x34\x07\x00\x03a/b\x00\x01",
           b"\x20\x02\x00\x00", b"\xf0\x00", b"\x30\x81\x80\x01" + b"x" * 64]

    async def session(r, w, n):
        await recv(r)
        await send(w, CONNACK)
        await send(w, bad[n - 1])
        await asyncio.sleep(5)

    broker.use(session)
    for data in bad:
        c = client()
        await c.connect()
        await asyncio.wait_for_ms(c.wait_lost(), 2000)
        assert isinstance(c.last_error, mqtt.ProtocolError), (data, c.last_error)
    c = client(max_packet=128)  # a configured limit

    async def big(r, w, n):
        await recv(r)
        await send(w, CONNACK + mqtt.publish("a", b"x" * 200))
        await asyncio.sleep(5)

    broker.use(big)
    await c.connect()
    await asyncio.wait_for_ms(c.wait_lost(), 2000)
    assert "limit" in str(c.last_error), c.last_error
    try:
        await c.publish("a", b"x" * 200)
    except ValueError:
        pass  # the same bound applies to what we send
    else:
        raise AssertionError("oversize publish accepted")


async def refusals(broker):
    replies = [b"\x20\x02\x00\x05", b"\x20\x02\x00\x04", b"\x20\x02\x00\x09", b"\x40\x02\x00\x01",
               b""]

    async def session(r, w, n):
        await recv(r)
        if replies[n - 1]:
            await send(w, replies[n - 1])
        await asyncio.sleep_ms(50)

    broker.use(session)
    c = client(timeout_ms=1000)
    e = await expect_raise(mqtt.ConnectRefused, c.connect())
    assert e.code == 5 and "not authorized" in str(e)
    e = await expect_raise(mqtt.ConnectRefused, c.connect())
    assert e.code == 4 and "bad user name or password" in str(e)
    await expect_raise(mqtt.ProtocolError, c.connect())  # return code 9 does not exist
    await expect_raise(mqtt.ProtocolError, c.connect())  # not a CONNACK
    await expect_raise(mqtt.NotConnected, c.connect())  # closed without a word
    assert not c.connected

    async def suback(r, w, n):
        await recv(r)
        await send(w, CONNACK)
        sub = await recv(r)
        assert sub == b"\x82\x08\x00\x01\x00\x03c/#\x01", sub
        await send(w, b"\x90\x03\x00\x01\x80")
        unsub = await recv(r)
        assert unsub == b"\xa2\x07\x00\x02\x00\x03c/#", unsub
        await send(w, b"\xb0\x02\x00\x02")
        await asyncio.sleep(5)

    broker.use(suback)
    c = client()
    await c.connect()
    await expect_raise(mqtt.SubscribeRefused, c.subscribe("c/#", 1))
    await c.unsubscribe("c/#")
    c.close()
    await expect_raise(mqtt.NotConnected, c.publish("t", b"", 0))  # QoS 0 needs a link


async def inbound(broker):
    acks = []
    go = asyncio.Event()

    async def session(r, w, n):
        await recv(r)
        await send(w, CONNACK + mqtt.publish("a/b", b"hi", 1, True, 7))
        acks.append(await recv(r))
        await go.wait()
        for i in range(10):
            await send(w, mqtt.publish("n", bytes((i,))))
        await asyncio.sleep(5)

    broker.use(session)
    c = client(inbox_len=4)
    await c.connect()
    assert await asyncio.wait_for_ms(c.message(), 2000) == ("a/b", b"hi", True)
    go.set()
    await until(lambda: c.dropped == 6)  # 4 kept, the rest dropped and counted
    assert acks == [b"\x40\x02\x00\x07"], acks
    rest = []
    for _ in range(4):
        rest.append(await c.message())
    assert rest == [("n", bytes((i,)), False) for i in range(4)], rest
    assert c.connected
    c.close()


async def link(broker):
    # Refuse two attempts, accept the third, then drop it: the waits are exactly the
    # Backoff's sequence for the seed, and `up`/`down` follow.
    subs = []

    async def session(r, w, n):
        await recv(r)
        if n <= 2:
            return
        await send(w, CONNACK)
        subs.append(await recv(r))
        await send(w, b"\x90\x03" + subs[-1][2:4] + b"\x01")
        if n == 3:
            await asyncio.sleep_ms(100)
            return
        tail = await recv(r)
        subs.append(tail)
        await asyncio.sleep(5)

    def policy():
        return Backoff(base_ms=40, cap_ms=160, initial_window_ms=200, stable_ms=10_000,
                       rng=XorShift32(7))

    ref = policy()
    waits = [ref.after_boot(), ref.after_failure(), ref.after_failure(), ref.after_loss(100)]
    broker.use(session)
    ln = mqttlink.Link(client(), policy())
    await ln.subscribe("cmd/#", 1)  # not connected yet: remembered
    assert ln.down.is_set() and not ln.is_up
    t0 = time.ticks_ms()
    assert ln.start() is ln.start()  # idempotent
    await asyncio.wait_for_ms(ln.up.wait(), 3000)
    t_up = time.ticks_diff(time.ticks_ms(), t0)
    assert ln.attempts == 3 and ln.connects == 1
    assert sum(waits[:3]) <= t_up <= sum(waits[:3]) + 1000, (t_up, waits)
    await asyncio.wait_for_ms(ln.down.wait(), 3000)
    t_down = time.ticks_ms()
    await asyncio.wait_for_ms(ln.up.wait(), 3000)
    again = time.ticks_diff(time.ticks_ms(), t_down)
    assert waits[3] <= again <= waits[3] + 1000, (again, waits)
    await until(lambda: len(subs) == 2)
    assert all(s[0] == 0x82 and s[4:] == b"\x00\x05cmd/#\x01" for s in subs), subs
    await ln.stop()
    await until(lambda: len(subs) == 3)
    assert subs[2] == b"\xe0\x00", subs  # DISCONNECT: the broker drops the will
    assert ln.down.is_set() and not ln.up.is_set()


async def main():
    broker = Broker()
    server = await asyncio.start_server(broker.accept, "127.0.0.1", PORT)
    for test in (dup_after_reconnect, keepalive, hostile, refusals, inbound, link):
        await test(broker)
        print(test.__name__, "ok")
    server.close()
    print("OK")


asyncio.run(main())
