# Cloud link transport: MQTT 3.1.1 over mutual TLS, with one supervisor that reconnects.
#
# Three layers, each usable alone:
# - a packet codec of pure functions (bytes in, bytes or tuples out) that bounds every
#   length it reads and raises ProtocolError on anything a broker must not send;
# - Client: one connection at a time over an asyncio stream, keep-alive pings, QoS 1
#   publishes kept in order in a bounded in-flight window until acknowledged (sent again,
#   flagged DUP, after a reconnect) and a bounded inbox that counts what it drops;
# - Link: the only code that connects. It waits as backoff.py says (random start, full
#   jitter, reset when stable), re-subscribes, and shows the state as `up`/`down` events.
# QoS 2 is not supported: subscriptions ask for at most QoS 1.

import asyncio
import time

try:
    from micropython import const
except ImportError:  # CPython can import the codec (with bootloader/ on the path)
    def const(x):
        return x

from backoff import Backoff
# The encoder of CONNECT, PUBLISH, PUBACK and DISCONNECT lives in the boot stage, which
# alert-only mode uses on its own (bootloader/cloudalert.py): one copy, frozen with the
# known-good code. This module adds the rest of the codec and the client.
from cloudalert import (_packet, _pid, _str, _varint, connect, disconnect,  # noqa: F401
                        puback, publish)

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
_CONNECT_REFUSED = (None, "unacceptable protocol version", "client identifier rejected",
                    "server unavailable", "bad user name or password", "not authorized")


class MQTTError(Exception):
    """Base of the errors this module raises."""


class ProtocolError(MQTTError):
    """The broker sent something malformed, oversize or not allowed in MQTT 3.1.1."""


class ConnectRefused(MQTTError):
    """CONNACK with a non-zero return code; `code` is that code."""

    def __init__(self, code):
        super().__init__("connection refused: %s (%d)" % (_CONNECT_REFUSED[code], code))
        self.code = code


class SubscribeRefused(MQTTError):
    """SUBACK returned 0x80 (failure) for a topic filter."""


class NotConnected(MQTTError):
    """The operation needs a connection and there is none (or the broker closed it)."""


class TLSError(MQTTError):
    """The broker's certificate was refused (wrong CA, wrong name, expired ...)."""


class Full(MQTTError):
    """The QoS 1 in-flight window is full; try again after acknowledgements arrive."""


# ---- packet codec: pure functions ---------------------------------------------------
# connect, publish, puback and disconnect come from the boot stage (imported above);
# _varint is re-exported for the tests of the wire format.

def subscribe(pid, topics):
    """SUBSCRIBE to [(filter, qos), ...] with QoS 0 or 1 each."""
    if not topics:
        raise ValueError("SUBSCRIBE needs at least one filter")
    body = _pid(pid)
    for flt, qos in topics:
        if not flt or qos not in (0, 1):
            raise ValueError("bad subscription: %r %r" % (flt, qos))
        body += _str(flt) + bytes((qos,))
    return _packet(0x82, body)


def unsubscribe(pid, filters):
    if not filters:
        raise ValueError("UNSUBSCRIBE needs at least one filter")
    body = _pid(pid)
    for flt in filters:
        body += _str(flt)
    return _packet(0xA2, body)


def pingreq():
    return bytearray(b"\xc0\x00")


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
        _need(n == 2 and body[0] < 2 and body[1] < len(_CONNECT_REFUSED)
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


# ---- the client: one connection at a time ------------------------------------------

def tls_context(ca_der, cert_der, key_der):
    """A mutual-TLS client context: the broker's certificate must chain to `ca_der`, and
    the device proves itself with its own certificate and key (all DER); AEAD suites only
    (tlsctx.py). The update puller downloads through the same context."""
    import tlsctx

    return tlsctx.client(ca_der, cert_der, key_der)



def open_tls(host, port, ssl_ctx, server_hostname):
    """A non-blocking TLS socket to host:port; the handshake (and the check of the server's
    certificate) runs on the first write. The cloud link and the update puller both use it."""
    import errno
    import socket
    # getaddrinfo blocks (DNS); an IP literal or a cached name keeps that short.
    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    sock = socket.socket(ai[0], ai[1], ai[2])
    try:
        sock.setsockopt(6, 1, 1)  # TCP_NODELAY: Nagle would add ~40 ms per exchange
        sock.setblocking(False)
        try:
            sock.connect(ai[-1])
        except OSError as e:
            if e.errno != errno.EINPROGRESS:
                raise
        tls = ssl_ctx.wrap_socket(sock, server_hostname=server_hostname,
                                  do_handshake_on_connect=False)
        tls.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return tls

class Client:
    """An MQTT 3.1.1 client over one TLS connection at a time (Link reconnects it).

    `will` is None or (topic, payload, qos, retain). `max_packet` bounds what is received
    and sent; `max_inflight` bounds the QoS 1 publishes kept until PUBACK (memory: their
    encoded size); `inbox_len` bounds received messages not yet taken with `message()`.
    """

    def __init__(self, client_id, host, port=8883, ssl_context=None, server_hostname=None,
                 keepalive_s=60, clean=True, username=None, password=None, will=None,
                 max_packet=MAX_PACKET, max_inflight=8, inbox_len=16, timeout_ms=10_000):
        import ssl
        if ssl_context is None or ssl_context.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("the broker must be verified: use tls_context()")
        self._connect_pkt = connect(client_id, keepalive_s, clean, username, password, will)
        self.host = host
        self.port = port
        self.server_hostname = server_hostname or host
        self.keepalive_ms = keepalive_s * 1000
        self.max_packet = max_packet
        self.max_inflight = max_inflight
        self.timeout_ms = timeout_ms
        self._ssl = ssl_context
        self._sock = None
        self._stream = None
        self._opening = None  # the stream connect() is setting up
        self._tasks = ()
        self._lost = asyncio.Event()
        self._lost.set()
        self._wlock = asyncio.Lock()
        self._pid = 0
        self._inflight = []  # [pid, packet, sent] in publish order
        self._waiting = {}  # pid -> [event, reply] for SUBSCRIBE / UNSUBSCRIBE
        self._acked = asyncio.Event()
        self._inbox = []
        self._inbox_len = inbox_len
        self._inbox_ev = asyncio.Event()
        self._last_rx = self._last_tx = 0
        self._pinged = False  # a PINGREQ awaits its PINGRESP
        self._rbuf = bytearray(max_packet + 5)  # the largest packet and its fixed header
        self._rpos = self._rend = 0
        self.dropped = 0  # received messages lost because the inbox was full
        self.pings = 0
        self.pongs = 0
        self.last_error = None

    @property
    def connected(self):
        return self._stream is not None

    def use_tls(self, ssl_context):
        """The context of the next connect (e.g. with a renewed device certificate)."""
        self._ssl = ssl_context

    @property
    def inflight(self):
        """Packet ids of QoS 1 publishes not yet acknowledged, oldest first."""
        return [e[0] for e in self._inflight]

    async def _open(self):
        return open_tls(self.host, self.port, self._ssl, self.server_hostname)

    async def _write(self, stream, pkt):
        stream.write(pkt)  # sends at once what the socket takes, buffers the rest
        if getattr(stream, "out_buf", True):  # skip a useless wait when all went out
            await asyncio.wait_for_ms(stream.drain(), self.timeout_ms)
        self._last_tx = time.ticks_ms()

    async def _read(self, stream):
        # Packets are cut out of one receive buffer allocated with the client: every
        # read takes all the bytes there are, so a burst costs one wait, not one per
        # packet (on the unix port each wait on a TLS socket costs ~1 ms).
        buf = self._rbuf
        while True:
            if self._rend > self._rpos:
                h = header(memoryview(buf)[self._rpos:self._rend], self.max_packet)
                if h is not None:
                    first, n, size = h
                    start = self._rpos + size
                    if self._rend >= start + n:
                        self._rpos = start + n
                        return parse(first, memoryview(buf)[start:start + n])
            if self._rpos == self._rend:
                self._rpos = self._rend = 0
            elif self._rpos and len(buf) - self._rend < 512:
                # a partial packet near the end: move it to the front (rare, small)
                left = self._rend - self._rpos
                buf[0:left] = buf[self._rpos:self._rend]
                self._rpos, self._rend = 0, left
            got = await stream.readinto(memoryview(buf)[self._rend:])
            if not got:
                raise NotConnected("connection closed by the broker")
            self._rend += got

    async def _flush(self, stream):
        # Send every not-yet-sent QoS 1 publish, oldest first. Whoever runs this sends them
        # all, so the order on the wire is the publish order whatever task gets here first.
        while stream is self._stream or stream is self._opening:
            for e in self._inflight:
                if not e[2]:
                    break
            else:
                return
            e[2] = True
            await self._write(stream, e[1])

    async def connect(self):
        """Open the connection, CONNECT and wait for CONNACK; then send the QoS 1 publishes
        still unacknowledged (flagged DUP) and those queued while offline, in order.
        Returns the CONNACK session-present flag. Raises OSError, MQTTError or
        asyncio.TimeoutError (every step is bounded by `timeout_ms`)."""
        self.close()
        sock = None
        ok = False
        try:
            sock = await self._open()
            stream = asyncio.StreamReader(sock)
            self._opening = stream
            self._rpos = self._rend = 0
            try:
                await self._write(stream, self._connect_pkt)  # includes the TLS handshake
            except ValueError as e:  # how MicroPython's ssl reports a failed verification
                raise TLSError(str(e).strip())
            pkt = await asyncio.wait_for_ms(self._read(stream), self.timeout_ms)
            if pkt[0] != CONNACK:
                raise ProtocolError("expected CONNACK, got packet type %d" % pkt[0])
            if pkt[2]:
                raise ConnectRefused(pkt[2])
            for e in self._inflight:
                if e[2]:
                    e[1][0] |= 0x08  # DUP: the broker may have seen it
                    e[2] = False
            await self._flush(stream)
            ok = True
        finally:
            self._opening = None
            if not ok and sock is not None:
                sock.close()
        self._sock = sock
        self._stream = stream
        self._last_rx = self._last_tx = time.ticks_ms()
        self._lost = asyncio.Event()
        tasks = [asyncio.create_task(self._reader(stream))]
        if self.keepalive_ms:
            tasks.append(asyncio.create_task(self._pinger(stream)))
        self._tasks = tasks
        return pkt[1]

    def close(self, stream=None, err=None):
        """Drop the connection (only if it is still `stream`, when given). Idempotent."""
        if self._stream is None or (stream is not None and stream is not self._stream):
            return
        self._stream = None
        self.last_error = err
        try:
            self._sock.close()
        except OSError:
            pass
        self._sock = None
        me = asyncio.current_task()
        for t in self._tasks:
            if t is not me:
                t.cancel()
        self._tasks = ()
        for w in self._waiting.values():
            w[0].set()  # reply stays None: the request failed
        self._lost.set()

    async def wait_lost(self):
        """Return when the current connection is gone."""
        await self._lost.wait()

    async def disconnect(self):
        """Send DISCONNECT (the broker then discards the will) and close."""
        stream = self._stream
        if stream is not None:
            try:
                async with self._wlock:
                    await self._write(stream, disconnect())
            except (OSError, asyncio.TimeoutError):
                pass
            self.close(stream)

    async def _send(self, pkt):
        stream = self._stream
        if stream is None:
            raise NotConnected("not connected")
        async with self._wlock:
            await self._guarded(stream, self._write(stream, pkt))

    async def _guarded(self, stream, coro):
        # A write that fails, times out or is cancelled halfway leaves the stream unusable.
        done = False
        try:
            if stream is not self._stream:
                raise NotConnected("connection lost")
            await coro
            done = True
        except (OSError, asyncio.TimeoutError) as e:
            self.close(stream, e)
            raise NotConnected("connection lost: %r" % e)
        finally:
            if not done:
                self.close(stream)

    def _next_pid(self):
        busy = [e[0] for e in self._inflight]
        for _ in range(0x10000):
            self._pid = self._pid % 0xFFFF + 1
            if self._pid not in busy and self._pid not in self._waiting:
                return self._pid
        raise Full("no free packet id")

    async def publish(self, topic, payload, qos=0, retain=False):
        """Publish. QoS 0 needs a connection (else NotConnected). QoS 1 joins the in-flight
        window (Full when it holds `max_inflight`), goes out now if connected, else on the
        next connect, and is kept until PUBACK; returns its packet id."""
        if qos == 0:
            pkt = publish(topic, payload, 0, retain)
            self._check_size(pkt)
            await self._send(pkt)
            return 0
        if len(self._inflight) >= self.max_inflight:
            raise Full("%d QoS 1 messages awaiting PUBACK" % len(self._inflight))
        pid = self._next_pid()
        pkt = publish(topic, payload, qos, retain, pid)
        self._check_size(pkt)
        self._inflight.append([pid, pkt, False])
        stream = self._stream
        if stream is not None:
            try:
                async with self._wlock:
                    await self._guarded(stream, self._flush(stream))
            except NotConnected:
                pass  # it is queued: the next connect sends it
        return pid

    def _check_size(self, pkt):
        if len(pkt) > self.max_packet:
            raise ValueError("packet of %d bytes over the %d byte limit" % (len(pkt),
                                                                          self.max_packet))

    async def wait_acked(self, pid):
        """Wait until the QoS 1 publish `pid` is acknowledged (across reconnects)."""
        while pid in self.inflight:
            await self._acked.wait()

    async def _request(self, pkt, pid):
        w = [asyncio.Event(), None]
        self._waiting[pid] = w
        try:
            await self._send(pkt)
            await asyncio.wait_for_ms(w[0].wait(), self.timeout_ms)
        finally:
            del self._waiting[pid]
        if w[1] is None:
            raise NotConnected("connection lost before the reply")
        return w[1]

    async def subscribe(self, topic, qos=0):
        """Subscribe to one filter at QoS 0 or 1; returns the granted QoS.
        Raises SubscribeRefused when the broker answers 0x80."""
        pid = self._next_pid()
        code = (await self._request(subscribe(pid, [(topic, qos)]), pid))[2][0]
        if code == 0x80:
            raise SubscribeRefused("subscription to %r refused" % topic)
        return code

    async def unsubscribe(self, topic):
        pid = self._next_pid()
        await self._request(unsubscribe(pid, [topic]), pid)

    async def message(self):
        """The next received message as (topic, payload, retained), oldest first."""
        while not self._inbox:
            self._inbox_ev.clear()
            await self._inbox_ev.wait()
        return self._inbox.pop(0)

    async def _reader(self, stream):
        err = None
        try:
            while True:
                pkt = await self._read(stream)
                self._last_rx = time.ticks_ms()
                await self._handle(pkt)
        except (OSError, MQTTError) as e:
            err = e
        self.close(stream, err)

    async def _handle(self, pkt):
        kind = pkt[0]
        if kind == PUBLISH:
            if len(self._inbox) < self._inbox_len:
                self._inbox.append((pkt[1], pkt[2], pkt[4]))
                self._inbox_ev.set()
            else:
                self.dropped += 1  # acknowledged anyway: a stalled inbox must not stall the link
            if pkt[3]:
                await self._send(puback(pkt[6]))
        elif kind == PUBACK:
            for i, e in enumerate(self._inflight):
                if e[0] == pkt[1]:
                    del self._inflight[i]
                    ev, self._acked = self._acked, asyncio.Event()
                    ev.set()
                    break
        elif kind == PINGRESP:
            self._pinged = False
            self.pongs += 1
        elif kind in (SUBACK, UNSUBACK):
            w = self._waiting.get(pkt[1])
            if w is not None:
                w[1] = pkt
                w[0].set()
        else:
            raise ProtocolError("unexpected packet type %d" % kind)

    async def _pinger(self, stream):
        # PINGREQ after half a keep-alive without traffic either way (the broker allows
        # 1.5 keep-alives of silence); one keep-alive without any reply means a dead link.
        ka = self.keepalive_ms
        self._pinged = False
        while True:
            await asyncio.sleep_ms(ka // 4)
            now = time.ticks_ms()
            if time.ticks_diff(now, self._last_rx) >= ka:
                self.close(stream, MQTTError("no reply from the broker for a keep-alive period"))
                return
            if not self._pinged and (time.ticks_diff(now, self._last_tx) >= ka // 2
                                     or time.ticks_diff(now, self._last_rx) >= ka // 2):
                self._pinged = True
                try:
                    await self._send(pingreq())
                except NotConnected:
                    return
                self.pings += 1


# ---- the supervisor ----------------------------------------------------------------

class Link:
    """Keeps `client` connected: the one place that connects and reconnects.

    `up` and `down` are asyncio events (exactly one is set). Subscriptions made through
    the Link are renewed after every connect without a stored session. The wait before
    each attempt comes from `backoff` (see backoff.py for the numbers)."""

    def __init__(self, client, backoff=None, log=None):
        self.client = client
        self.backoff = backoff or Backoff()
        self.up = asyncio.Event()
        self.down = asyncio.Event()
        self.down.set()
        self._subs = {}
        self._task = None
        self._log = log or (lambda msg: None)
        self.attempts = 0
        self.connects = 0
        self.last_error = None

    @property
    def is_up(self):
        return self.up.is_set()

    def start(self, boot=True):
        """Start the supervisor task (once; later calls return the same task). With
        `boot`, the first attempt waits the random start-up delay."""
        if self._task is None:
            self._task = asyncio.create_task(self._keep_connected(boot))
        return self._task

    async def stop(self):
        """Stop reconnecting and leave cleanly (DISCONNECT: the will is not sent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        await self.client.disconnect()
        self._state(False)

    def _state(self, up):
        if up:
            self.down.clear()
            self.up.set()
        else:
            self.up.clear()
            self.down.set()

    async def _keep_connected(self, boot):
        delay = self.backoff.after_boot() if boot else 0
        while True:
            await asyncio.sleep_ms(delay)
            self.attempts += 1
            try:
                session = await self.client.connect()
                if not session:
                    await self._resubscribe()
            except (OSError, MQTTError, asyncio.TimeoutError) as e:
                self.client.close()
                self.last_error = e
                delay = self.backoff.after_failure()
                self._log("mqtt: connect failed (%r); next attempt in %d ms" % (e, delay))
                continue
            self.connects += 1
            since = time.ticks_ms()
            self._state(True)
            self._log("mqtt: connected")
            await self.client.wait_lost()
            self._state(False)
            self.last_error = self.client.last_error
            delay = self.backoff.after_loss(time.ticks_diff(time.ticks_ms(), since))
            self._log("mqtt: connection lost (%r); next attempt in %d ms"
                      % (self.last_error, delay))

    async def _resubscribe(self):
        for topic, qos in list(self._subs.items()):  # subscribe() may add to it meanwhile
            try:
                await self.client.subscribe(topic, qos)
            except SubscribeRefused as e:  # a broker policy, not a broken link: carry on
                self.last_error = e
                self._log("mqtt: %s" % e)

    async def subscribe(self, topic, qos=0):
        """Subscribe now if up, and again after every reconnect."""
        self._subs[topic] = qos
        if self.client.connected:
            try:
                await self.client.subscribe(topic, qos)
            except SubscribeRefused:
                del self._subs[topic]
                raise
            except NotConnected:
                pass  # the next connect subscribes

    async def unsubscribe(self, topic):
        self._subs.pop(topic, None)
        if self.client.connected:
            await self.client.unsubscribe(topic)

    async def publish(self, topic, payload, qos=0, retain=False):
        return await self.client.publish(topic, payload, qos, retain)

    async def message(self):
        return await self.client.message()
