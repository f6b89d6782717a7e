# A request body read through httpreq.Request: bytes the connection already holds (asyncio's
# Stream exposes its non-blocking socket as `s`) are taken without a turn of the event loop;
# only a read that has to wait goes through the stream; the body's bounds hold either way.
#   micropython httpreq_body.py   (prints OK)
import asyncio

from httpreq import HTTPError, Request


class Sock:
    """A non-blocking socket: hands out what is queued, None when nothing is (EAGAIN), 0 once
    the peer closed."""

    def __init__(self):
        self.queued = bytearray()
        self.closed = False
        self.reads = 0

    def readinto(self, mv):
        self.reads += 1
        if not self.queued:
            return 0 if self.closed else None
        n = min(len(mv), len(self.queued))
        mv[:n] = self.queued[:n]
        self.queued = self.queued[n:]
        return n


class Stream:
    """asyncio's Stream as Request sees it: `s`, and readinto() that waits for the socket."""

    def __init__(self):
        self.s = Sock()
        self.waits = 0
        self.arrived = asyncio.Event()

    async def readinto(self, mv):
        self.waits += 1
        while True:
            n = self.s.readinto(mv)
            if n is not None:
                return n
            self.arrived.clear()
            await self.arrived.wait()


async def main():
    st = Stream()
    body = bytes(range(256)) * 40  # 10240 bytes: 100 came with the head
    st.s.queued[:] = body[100:]
    req = Request("POST", "/x", {}, {}, len(body), st, memoryview(body[:100]), None)
    buf = bytearray(4096)
    got = bytearray()
    n = await req.readinto(buf)
    assert n == 100 and st.s.reads == 0, "the head's bytes come first"
    got += buf[:n]
    while len(got) < len(body):
        n = await req.readinto(buf)
        got += buf[:n]
    assert bytes(got) == body
    assert st.waits == 0, "queued bytes were read through the event loop: %d waits" % st.waits
    assert await req.readinto(buf) == 0 and req.remaining == 0

    # Nothing queued: the read waits (through the stream) for the bytes to arrive.
    st = Stream()
    req = Request("POST", "/x", {}, {}, 10, st, memoryview(b""), None)

    async def later():
        await asyncio.sleep_ms(20)
        st.s.queued[:] = b"0123456789abc"  # 3 bytes past the body: never read
        st.arrived.set()

    asyncio.create_task(later())
    n = await req.readinto(buf)
    assert n == 10 and bytes(buf[:10]) == b"0123456789" and st.waits == 1, (n, st.waits)
    assert await req.readinto(buf) == 0 and bytes(st.s.queued) == b"abc"

    # The peer closes early: a precise 400, whichever path saw it.
    st = Stream()
    st.s.queued[:] = b"12345"
    st.s.closed = True
    req = Request("POST", "/x", {}, {}, 8, st, memoryview(b""), None)
    assert await req.readinto(buf) == 5
    try:
        await req.readinto(buf)
        raise AssertionError("a body cut short was accepted")
    except HTTPError as e:
        assert e.status == 400 and "3 bytes before the end" in e.message, e.message

    # A stream without a socket (any readinto() stream): always the waiting path.
    class Plain:
        async def readinto(self, mv):
            mv[:4] = b"abcd"
            return 4

    req = Request("POST", "/x", {}, {}, 4, Plain(), memoryview(b""), None)
    assert await req.readinto(buf) == 4 and bytes(buf[:4]) == b"abcd"
    print("OK")


asyncio.run(main())
