# Device side of test_throttle's connection test: httpd's slot policy over in-memory streams.
# When the four slots are full, a newcomer evicts a connection that is not the owner's, from
# the address holding the most slots, the oldest of those; the owner's connections keep their
# slots; with all four serving the owner a newcomer is closed at once, unanswered.
# Usage: micropython httpd_slots.py  (firmware/ on the path); prints OK.
import asyncio

import httpd
from httpd import Server, json_response


class Reader:
    """A client that sends `data` and then stays silent (until its task is cancelled)."""

    def __init__(self, data=b""):
        self.data = data
        self.silent = asyncio.Event()

    async def readinto(self, buf):
        if self.data:
            n = min(len(buf), len(self.data))
            buf[:n] = self.data[:n]
            self.data = self.data[n:]
            return n
        await self.silent.wait()
        return 0


class Writer:
    def __init__(self, ip):
        self.ip = ip
        self.out = b""
        self.closed = False

    def get_extra_info(self, name):
        return (self.ip, 40000)  # lwIP's form of a peer address

    def write(self, b):
        self.out += bytes(b)

    async def drain(self):
        pass

    def close(self):
        pass

    async def wait_closed(self):
        self.closed = True


async def main():
    srv = Server(log=lambda m: None)
    hold = asyncio.Event()

    @srv.route("GET", "/owner")
    async def owner(req):
        req.owner()  # what a valid session or a correct login does (auth.py)
        await hold.wait()
        return json_response({"ok": True})

    conns = []

    async def connect(ip, data=b""):
        w = Writer(ip)
        conns.append(w)
        asyncio.create_task(srv.handle(Reader(data), w))
        await asyncio.sleep_ms(5)
        return w

    assert httpd.MAX_CONNS == 4
    a = []
    for _ in range(3):
        a.append(await connect("10.0.0.66"))
    b = await connect("10.0.0.77")
    assert srv.active == 4 and srv.evicted == 0
    me = await connect("10.0.0.1", b"GET /owner HTTP/1.1\r\n\r\n")
    # The stranger with three slots loses its oldest, unanswered.
    assert srv.evicted == 1 and a[0].closed and a[0].out == b"", (srv.evicted, a[0].closed)
    assert not a[1].closed and not b.closed and srv.active == 4
    c = await connect("10.0.0.88")  # 10.0.0.66 still holds the most slots: its oldest goes
    assert a[1].closed and not a[2].closed and not b.closed
    # Two left at one slot each (66, 77, 88): the oldest of them goes, never the owner's.
    first = None
    for expect in (a[2], b):
        w = await connect("10.0.0.99")
        first = first or w
        assert expect.closed and not me.closed
    # 10.0.0.99 now holds two slots: reconnecting, it evicts its own oldest, not 88's.
    await connect("10.0.0.99")
    assert first.closed and not c.closed and not me.closed
    assert srv.evicted == 5
    # All four slots serve the owner: a newcomer is closed at once and nothing is evicted.
    for _ in range(3):
        await connect("10.0.0.1", b"GET /owner HTTP/1.1\r\n\r\n")
    assert srv.active == 4 and srv.evicted == 8
    late = await connect("10.0.0.99")
    assert late.closed and late.out == b"" and srv.refused == 1 and srv.evicted == 8
    hold.set()
    await asyncio.sleep_ms(20)
    assert me.out.startswith(b"HTTP/1.1 200 ") and srv.active == 0

    # The self-test's own request (selftest.py: owner_peer is loopback while it runs) holds
    # its slot from the accept on, before it has sent a byte: a flood never evicts it.
    hold.clear()
    for _ in range(4):
        await connect("10.0.0.66")
    srv.owner_peer = "127.0.0.1"
    mine = await connect("127.0.0.1")  # still in its handshake: nothing sent yet
    for _ in range(6):
        await connect("10.0.0.66")
    assert not mine.closed and srv.active == 4, (mine.closed, srv.active)
    srv.owner_peer = None
    await connect("127.0.0.1")  # after the self-test: an ordinary stranger again
    owners = [(c.remote, c.owner) for c in srv._conns]
    assert ("127.0.0.1", True) in owners and ("127.0.0.1", False) in owners, owners
    assert not mine.closed

    # An answer lets go of its body and closes its connection in the turn that sends its last
    # byte, before handle() resumes: the owner's next page is never built beside this one.
    srv = Server(log=lambda m: None)
    sent = []

    @srv.route("GET", "/page")
    async def page(req):
        sent.append(httpd.Response(["<p>" * 200, "end"], content_type="text/html"))
        return sent[-1]

    class Watched(Writer):
        at_close = None

        async def wait_closed(self):
            if self.at_close is None:  # the first close (handle() closes again, harmlessly)
                self.at_close = (srv.active, sent[-1].body)
            self.closed = True

    w = Watched("10.0.0.5")
    await srv.handle(Reader(b"GET /page HTTP/1.1\r\n\r\n"), w)
    assert w.out.startswith(b"HTTP/1.1 200 ") and w.out.endswith(b"<p>end"), w.out[-40:]
    assert w.at_close == (1, None) and srv.active == 0, w.at_close
    print("OK")


asyncio.run(main())
