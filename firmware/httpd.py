# httpd: a small HTTP/1.1 server for the device's local API and pages over TLS. Everything a
# client controls is bounded: head size, header count, body size per route, time per read
# and per response, connections (the request side is httpreq.py). A few silent or slow
# sockets cannot lock the owner out: every phase has a deadline, and when the slots are full
# a newcomer takes the slot of a connection that has not shown itself to be the owner's
# (docs/interfaces.md, "Under attack on the owner's network").
import asyncio
import json
import socket
import time

from micropython import const

from httpreq import HTTPError, Request, parse_qs, readinto, split_head  # noqa: F401

MAX_HEAD = const(2048)  # request line + headers
MAX_CONNS = const(4)
# The TLS handshake runs inside the first read (the socket is wrapped without a handshake),
# so one deadline from accept to the first byte of the request bounds a silent TCP
# connection and the whole handshake alike; a second bounds the whole head.
FIRST_BYTE_MS = const(3000)
HEAD_MS = const(6000)  # from accept to the end of the request head
SEND_MS = const(10000)  # a response the client does not take within this is dropped
# TCP_NODELAY (the unix port's socket module has no names for it): see _Tls.
_TCP = getattr(socket, "IPPROTO_TCP", 6)
_NODELAY = getattr(socket, "TCP_NODELAY", 1)

REASONS = {200: "OK", 201: "Created", 204: "No Content", 303: "See Other", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 409: "Conflict", 411: "Length Required",
           413: "Payload Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Entity",
           429: "Too Many Requests", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}

# Sent with every response: no caching of personal data, no framing, no sniffing, no referrer,
# no external anything; HSTS because the API is only ever served over TLS.
SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    ("Strict-Transport-Security", "max-age=31536000"),
)


class Response:
    def __init__(self, body=b"", status=200, content_type="application/json", headers=()):
        self.status = status
        # bytes, or a list of str/bytes pieces (a page): sent piece by piece through the
        # connection's buffer, so a page never needs its whole size in one allocation.
        self.body = body if isinstance(body, (bytes, list)) else body.encode()
        self.content_type = content_type
        self.headers = list(headers)


async def _stream(writer, pieces, buf):
    """Write bytes `pieces` gathered into `buf`, a buffer-full at a time."""
    mv = memoryview(buf)
    pos = 0
    for p in pieces:
        b = memoryview(p)
        while len(b):
            n = min(len(buf) - pos, len(b))
            mv[pos:pos + n] = b[:n]
            pos += n
            b = b[n:]
            if pos == len(buf):
                writer.write(buf)  # the stream copies what it cannot send at once
                await writer.drain()
                pos = 0
    if pos:
        writer.write(mv[:pos])


def json_response(obj, status=200, headers=()):
    return Response(json.dumps(obj), status, "application/json", headers)


def error_body(status, message):
    return json.dumps({"error": REASONS.get(status, "Error"), "message": message})


def peer(addr):
    """The client's address as text: `addr` is what accept() gave (the unix port: a raw
    sockaddr_in; lwIP: an (ip, port) tuple)."""
    if isinstance(addr, tuple):
        return str(addr[0])
    if isinstance(addr, (bytes, bytearray)) and len(addr) >= 8 and addr[0] == 2:
        return "%d.%d.%d.%d" % (addr[4], addr[5], addr[6], addr[7])
    return None


class _Conn:
    """One connection's slot: its task, the client's address, when it was accepted, and
    whether it has shown itself to be the owner's (a valid session or a correct login)."""
    __slots__ = ("task", "remote", "t0", "owner")

    def __init__(self, task, remote):
        self.task = task
        self.remote = remote
        self.t0 = time.ticks_ms()
        self.owner = False


class Route:
    __slots__ = ("method", "path", "handler", "max_body", "prefix")

    def __init__(self, method, path, handler, max_body, prefix):
        self.method = method
        self.path = path
        self.handler = handler
        self.max_body = max_body
        self.prefix = prefix


class Server:
    """Routes requests to `async handler(req) -> Response`. One request per connection."""

    def __init__(self, log=print):
        self.routes = []
        self.tables = []
        self.log = log
        # Head buffers, one per connection being served, made when first needed and then
        # reused: no 2 KiB allocation per request that could fail on a fragmented heap, and
        # no memory held for concurrency that never comes (up to MAX_CONNS).
        self._free = []
        self._conns = []  # _Conn of every connection holding a slot, oldest first
        self.served = 0
        self.evicted = 0  # connections dropped to make room for a newer one
        self.dropped = 0  # connections that sent nothing within FIRST_BYTE_MS
        self.refused = 0  # connections closed at once: every slot served the owner
        self.before = None  # async hook(req, route) -> Response or None (e.g. auth)
        # Connections from this address count as the owner's from their accept on: the
        # self-test's own request over loopback (selftest.py), which only the device itself
        # can make on a board, keeps its slot while a flood of strangers fills the others.
        self.owner_peer = None

    def route(self, method, path, max_body=0):
        """Decorator: register a handler; `path` ending in '*' matches a prefix."""
        def deco(handler):
            prefix = path.endswith("*")
            self.routes.append(Route(method, path[:-1] if prefix else path, handler, max_body,
                                     prefix))
            return handler
        return deco

    def table(self, rows, make):
        """Register many routes at once without an object per route: `rows` is the caller's
        constant tuple of (method, path, max_body, key), and make(key) returns the handler,
        per request."""
        self.tables.append((rows, make))

    def listing(self):
        """(method, path, max_body) of every route; a prefix route's path ends in '*'."""
        out = [(r.method, r.path + ("*" if r.prefix else ""), r.max_body) for r in self.routes]
        for rows, _ in self.tables:
            out += [(m, p, limit) for m, p, limit, _ in rows]
        return out

    def find(self, method, path):
        allowed = False
        for r in self.routes:
            if r.path == path or (r.prefix and path.startswith(r.path)):
                if r.method == method:
                    return r
                allowed = True
        for rows, make in self.tables:
            for m, p, limit, key in rows:
                if p == path:
                    if m == method:
                        return Route(m, p, make(key), limit, False)
                    allowed = True
        raise HTTPError(405 if allowed else 404,
                        "method not allowed" if allowed else "no such resource")

    async def _read_head(self, reader, buf, conn):
        """The head and the body bytes that came with it; (None, None) if the client closed
        or sent nothing before FIRST_BYTE_MS (no answer: it may not even have finished the
        TLS handshake). A head still incomplete HEAD_MS after accept gets a 408."""
        mv = memoryview(buf)
        pos = 0
        while True:
            left = time.ticks_diff(time.ticks_add(conn.t0, HEAD_MS if pos else FIRST_BYTE_MS),
                                   time.ticks_ms())
            try:
                if left <= 0:
                    raise asyncio.TimeoutError
                n = await asyncio.wait_for_ms(readinto(reader, mv[pos:]), left)
            except asyncio.TimeoutError:
                if not pos:
                    self.dropped += 1
                    return None, None
                raise
            if not n:
                return None, None
            pos += n
            end = buf.find(b"\r\n\r\n", 0, pos)
            if end >= 0:
                return bytes(mv[:end]), mv[end + 4:pos]  # the body's start: a view into buf
            if pos >= len(buf):
                raise HTTPError(431, "request head is larger than %d bytes" % MAX_HEAD)

    def _evict(self):
        """Make room for a new connection: drop one that has not shown itself to be the
        owner's, from the address that holds the most slots, the oldest of those. An
        attacker's sockets go first, and one that reconnects fast only evicts itself while
        it holds more slots than the owner. False if every slot serves the owner."""
        counts = {}
        for c in self._conns:
            if not c.owner:
                counts[c.remote] = counts.get(c.remote, 0) + 1
        if not counts:
            return False
        most = max(counts.values())
        for c in self._conns:  # oldest first
            if not c.owner and counts[c.remote] == most:
                self._conns.remove(c)
                self.evicted += 1
                c.task.cancel()
                return True
        return False

    async def handle(self, reader, writer):
        info = getattr(writer, "get_extra_info", None)
        conn = _Conn(asyncio.current_task(), peer(info("peername")) if info else None)
        conn.owner = conn.remote is not None and conn.remote == self.owner_peer
        if len(self._conns) >= MAX_CONNS and not self._evict():
            # Every slot serves the owner: close at once, before a handshake costs memory.
            self.refused += 1
            await self._close(writer)
            return
        self._conns.append(conn)
        buf = None
        try:
            buf = self._free.pop() if self._free else bytearray(MAX_HEAD)
            resp = await self._dispatch(reader, buf, conn)
            if resp is not None:
                await self._send(writer, resp, buf)  # the request is done with buf
        except (OSError, asyncio.TimeoutError, asyncio.CancelledError):
            pass  # the client went away, stopped reading the answer, or lost its slot
        except MemoryError as e:
            # Out of heap in this request: answer if we can, and keep serving the others.
            import sys

            sys.print_exception(e)
            try:
                await self._send(writer, Response(error_body(503, "low on memory"), 503,
                                                  headers=(("Retry-After", "2"),)))
            except (OSError, MemoryError, asyncio.TimeoutError):
                pass
        finally:
            if buf is not None:
                self._free.append(buf)
            if conn in self._conns:
                self._conns.remove(conn)
            self.served += 1
            await self._close(writer)

    @property
    def active(self):
        return len(self._conns)

    async def _dispatch(self, reader, buf, conn):
        try:
            head, extra = await self._read_head(reader, buf, conn)
            if head is None:
                return None
            method, path, qs, headers = split_head(head)
            if "transfer-encoding" in headers:
                raise HTTPError(411, "chunked bodies are not accepted; send Content-Length")
            cl = headers.get("content-length", "0")
            if not cl.isdigit() or len(cl) > 10:
                raise HTTPError(400, "malformed Content-Length")
            length = int(cl)
            route = self.find(method, path)
            if length > route.max_body:
                raise HTTPError(413, "body is limited to %d bytes" % route.max_body)
            req = Request(method, path, parse_qs(qs), headers, length, reader, extra, conn)
            if self.before:
                resp = await self.before(req, route)
                if resp is not None:
                    return resp
            return await route.handler(req)
        except HTTPError as e:
            return Response(error_body(e.status, e.message), e.status, headers=e.headers)
        except asyncio.TimeoutError:
            return Response(error_body(408, "the client stopped sending"), 408)
        except (ValueError, TypeError, KeyError) as e:
            # A handler met input it did not expect: refuse it rather than fail the device.
            self.log("http: rejected request: %r" % (e,))
            return Response(error_body(400, "invalid request"), 400)

    async def _send(self, writer, resp, buf=None):
        """Send `resp`; a client that does not take it within SEND_MS is dropped."""
        await asyncio.wait_for_ms(self._write(writer, resp, buf), SEND_MS)

    async def _write(self, writer, resp, buf):
        body = resp.body
        pieces = isinstance(body, list)
        length = 0
        if pieces:
            for i, p in enumerate(body):
                if isinstance(p, str):
                    body[i] = p = p.encode()  # once: the length and the stream both use it
                length += len(p)
        else:
            length = len(body)
        head = ["HTTP/1.1 %d %s" % (resp.status, REASONS.get(resp.status, "Status")),
                "Content-Type: " + resp.content_type,
                "Content-Length: %d" % length, "Connection: close"]
        for k, v in SECURITY_HEADERS:
            head.append(k + ": " + v)
        for k, v in resp.headers:
            head.append(k + ": " + v)
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        if pieces:
            await _stream(writer, body, buf or bytearray(256))
        elif body:
            writer.write(body)
        await writer.drain()
        # Every answer ends its connection (Connection: close). Let go of the body and the TLS
        # state now, in the turn that sent the last byte: handle() resumes only a turn later
        # (_send runs this in a time-out task), and by then the client, which has its answer,
        # may already be in its next request, whose page would otherwise be built beside this
        # one's (a page body is up to 13 KB, a TLS connection some 20 KB).
        resp.body = body = None
        await self._close(writer)

    async def _close(self, writer):
        try:
            writer.close()
            await writer.wait_closed()
        except OSError:
            pass

    async def serve(self, host, port, ssl):
        """Listen on host:port with TLS (`ssl` is the server SSLContext)."""
        return await asyncio.start_server(self.handle, host, port, backlog=2 * MAX_CONNS,
                                          ssl=_Tls(ssl))


class _Tls:
    """The server's SSLContext as asyncio.start_server uses it. Its accept loop survives an
    OSError from wrap_socket (that client is dropped) but ends on any other exception: a
    handshake that does not fit a tight heap would stop the API for good. Out of memory
    becomes ENOMEM here, and only that client is refused."""

    def __init__(self, ctx):
        self.ctx = ctx

    def wrap_socket(self, sock, **kw):
        # No Nagle: TLS sends each handshake message and the head and body of a response as
        # records of their own; held back until the client acknowledges the first, they
        # wait out its delayed ACK (40 ms on Linux, up to 200 ms elsewhere) on every request.
        try:
            sock.setsockopt(_TCP, _NODELAY, 1)
        except OSError:
            pass  # a stack without the option: slower, not wrong
        try:
            return self.ctx.wrap_socket(sock, **kw)
        except MemoryError:
            raise OSError(12)
