# httpreq: the request side of httpd: the head's parser, percent-decoding, query strings and
# forms, and Request, which reads a body within its limits and time-outs. Every refusal is an
# HTTPError with the precise reason.
import asyncio
import json

from micropython import const

MAX_HEADERS = const(32)
READ_TIMEOUT_MS = const(10000)  # a body read stalled longer than this is dropped (408)


class HTTPError(Exception):
    """Abort the request with `status` and a precise, user-facing `message`."""

    def __init__(self, status, message, headers=()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


async def readinto(reader, mv):
    """Stream.readinto() that waits out a TLS record still in flight (the socket was readable
    but no whole record arrived yet: readinto returns None), as Stream.read() does."""
    while True:
        n = await reader.readinto(mv)
        if n is not None:
            return n


def _unquote(s):
    """Percent-decoding for URL components and form fields; strict: bad escapes raise."""
    if "%" not in s and "+" not in s:
        return s
    out = bytearray()
    b = s.replace("+", " ").encode()
    i = 0
    while i < len(b):
        c = b[i]
        if c == 0x25:  # '%'
            h = b[i + 1:i + 3]
            if len(h) != 2 or any(x not in b"0123456789abcdefABCDEF" for x in h):
                raise HTTPError(400, "malformed percent-encoding")
            out.append(int(h, 16))
            i += 3
        else:
            out.append(c)
            i += 1
    try:
        return out.decode()
    except UnicodeError:
        raise HTTPError(400, "text is not valid UTF-8")


def parse_qs(text, max_fields=16):
    """Decode `a=1&b=2` into a dict; duplicate or too many fields are refused."""
    out = {}
    if not text:
        return out
    parts = text.split("&")
    if len(parts) > max_fields:
        raise HTTPError(400, "too many fields")
    for part in parts:
        k, _, v = part.partition("=")
        k = _unquote(k)
        if not k or k in out:
            raise HTTPError(400, "empty or repeated field name")
        out[k] = _unquote(v)
    return out


class Request:
    __slots__ = ("method", "path", "query", "headers", "content_length", "remote", "_reader",
                 "_left", "_extra", "_extra_pos", "state", "_conn", "_sock")

    def __init__(self, method, path, query, headers, content_length, reader, extra, conn):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.content_length = content_length
        self._conn = conn
        self.remote = conn.remote if conn else None
        self._reader = reader
        # asyncio's Stream exposes its (non-blocking) socket as `s`: see readinto
        self._sock = getattr(reader, "s", None)
        self._left = content_length
        self._extra = extra  # body bytes that arrived with the head
        self._extra_pos = 0
        self.state = {}  # for the application (session, ...)

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def owner(self):
        """The request carries the owner's session or login: its connection keeps its slot
        when the slots are full (see Server._evict)."""
        if self._conn:
            self._conn.owner = True

    def cookie(self, name):
        raw = self.headers.get("cookie")
        if not raw:
            return None
        for part in raw.split(";"):
            k, _, v = part.strip().partition("=")
            if k == name:
                return v
        return None

    @property
    def remaining(self):
        return self._left

    async def readinto(self, buf):
        """Read the next body bytes into `buf`; 0 at the end of the body. Stalls time out.
        Bytes the connection already holds are taken without a turn of the event loop: a
        caller reading a long body yields to the other tasks itself (updater.py)."""
        if self._left <= 0:
            return 0
        mv = memoryview(buf)
        n = min(len(mv), self._left)
        if self._extra_pos < len(self._extra):
            k = min(n, len(self._extra) - self._extra_pos)
            mv[:k] = self._extra[self._extra_pos:self._extra_pos + k]
            self._extra_pos += k
            self._left -= k
            return k
        # The TLS layer decrypts a whole record (up to 16 KiB) and hands it out a read at a
        # time, and the socket queues what the client sent ahead: take that at once (the
        # socket is non-blocking: None when nothing is there). Only a read that has to wait
        # pays for a time-out task and a poll of the socket.
        k = self._sock.readinto(mv[:n]) if self._sock is not None else None
        if k is None:
            k = await asyncio.wait_for_ms(readinto(self._reader, mv[:n]), READ_TIMEOUT_MS)
        if not k:
            raise HTTPError(400, "connection closed %d bytes before the end of the body"
                            % self._left)
        self._left -= k
        return k

    async def body(self, limit):
        """The whole body (at most `limit` bytes, else 413)."""
        if self.content_length > limit:
            raise HTTPError(413, "body is limited to %d bytes" % limit)
        buf = bytearray(self.content_length)
        mv = memoryview(buf)
        got = 0
        while got < len(buf):
            got += await self.readinto(mv[got:])
        return bytes(buf)

    async def _text(self, ctype, expected, bad, limit):
        """The body as text, if it has Content-Type `ctype` (else 415) and is UTF-8."""
        if (self.headers.get("content-type") or "").split(";")[0].strip() != ctype:
            raise HTTPError(415, "expected " + expected)
        raw = await self.body(limit)
        try:
            return raw.decode()
        except UnicodeError:
            raise HTTPError(400, bad)

    async def json(self, limit=2048):
        text = await self._text("application/json", "Content-Type: application/json",
                                "body is not valid JSON", limit)
        try:
            return json.loads(text)
        except ValueError:
            raise HTTPError(400, "body is not valid JSON")

    async def form(self, limit=2048, max_fields=16):
        return parse_qs(await self._text("application/x-www-form-urlencoded",
                                         "a form (application/x-www-form-urlencoded)",
                                         "form is not valid UTF-8", limit), max_fields)


def split_head(head):
    """Parse request line and headers; raises HTTPError with the precise reason."""
    try:
        text = head.decode()
    except UnicodeError:
        raise HTTPError(400, "request head is not valid UTF-8")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise HTTPError(400, "malformed request line")
    method, target, _version = parts
    if not method.isalpha() or not target.startswith("/"):
        raise HTTPError(400, "malformed request line")
    headers = {}
    if len(lines) - 1 > MAX_HEADERS:
        raise HTTPError(431, "more than %d headers" % MAX_HEADERS)
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        name = name.lower()
        if not sep or not name or " " in name or "\t" in name:
            raise HTTPError(400, "malformed header line")
        if name in headers:
            if name in ("content-length", "host", "cookie", "transfer-encoding"):
                raise HTTPError(400, "repeated %s header" % name)
            headers[name] += ", " + value.strip()
        else:
            headers[name] = value.strip()
    path, _, qs = target.partition("?")
    return method, _unquote(path), qs, headers
