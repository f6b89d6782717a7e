# Device side of test_fuzz: the real HTTP server, API and pages of a provisioned simulated
# device (its verified slot, its flash image) run in-process over in-memory streams: the same
# code as over TLS, without the handshakes. The host sends requests on stdin as frames
# "<length>\n<bytes>"; the device answers one JSON line per request:
#   {"s": status or null (no answer), "c": stored state changed, "x": crash or null}
# Stored state = every file on the data filesystem except the login throttle counter, which
# records failed logins by design; it is hashed again whenever the flash saw a program or an
# erase (a request that wrote nothing changed nothing). "{SID___...}" and "{CSRF__...}" (48
# bytes, the size of the tokens) are replaced by a live session's cookie and CSRF token,
# which the harness keeps logged in. The first line out lists the routes.
#   micropython http_fuzz.py SIMDIR PASSWORD
import asyncio
import json
import sys

from fuzzio import device, digest, read_frame

SID = b"{SID" + b"_" * 43 + b"}"
CSRF = b"{CSRF" + b"_" * 42 + b"}"


class Reader:
    """A client that sends `data` in chunks of `chunk` bytes, then closes."""

    def __init__(self, data, chunk):
        self.data = memoryview(data)
        self.pos = 0
        self.chunk = chunk

    async def readinto(self, buf):
        n = min(len(buf), len(self.data) - self.pos, self.chunk)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


class Writer:
    def __init__(self):
        self.out = []

    def write(self, b):
        self.out.append(bytes(b))

    async def drain(self):
        pass

    def close(self):
        pass

    async def wait_closed(self):
        pass


class Harness:
    def __init__(self, simdir, password):
        self.dev, fl = device(simdir)
        import api

        self.dev.restart_later = lambda delay_ms=0: 0  # a reset request must not end the run
        self.srv = api.build(self.dev)
        self.password = password
        self.sid = self.csrf = None
        self.flash = fl  # counts every program and erase
        self.state = digest("/data", ("throttle.json",)).digest()

    def session(self):
        """Keep one live session for the requests that carry {SID} / {CSRF}."""
        s = self.dev.sessions
        if self.sid in s._s:
            return
        cred = self.dev.credentials
        cred.throttle.clear()  # fuzzed wrong logins may have locked it
        self.sid, self.csrf = s.login(self.password)

    async def one(self, raw, chunk):
        self.session()
        raw = raw.replace(SID, self.sid.encode()).replace(CSRF, self.csrf.encode())
        ops = self.flash.ops
        w = Writer()
        crash = None
        try:
            await self.srv.handle(Reader(raw, chunk), w)
        except Exception as e:  # the point is to catch what the server did not
            crash = repr(e)
        head = b"".join(w.out)[:16]
        status = int(head[9:12]) if head.startswith(b"HTTP/1.1 ") else None
        changed = False
        if self.flash.ops != ops:  # no flash write at all: nothing stored changed
            now = digest("/data", ("throttle.json",)).digest()
            changed = now != self.state
            self.state = now
        return {"s": status, "c": changed, "x": crash}


async def main():
    h = Harness(sys.argv[1], sys.argv[2])
    routes = [list(r) for r in h.srv.listing()]
    print(json.dumps({"routes": routes}))
    stdin = sys.stdin.buffer
    n = 0
    while True:
        raw = read_frame(stdin)
        if raw is None:
            break
        n += 1
        # Vary how the bytes arrive: whole, or in small pieces (partial reads, split heads).
        print(json.dumps(await h.one(raw, 4096 if n % 3 else 1 + n % 37)))


asyncio.run(main())
