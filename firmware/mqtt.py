# Cloud link transport: an MQTT 3.1.1 client over mutual TLS, one connection at a time.
#
# - the packets: mqttwire.py, the boot stage's codec (alert-only mode sends its alert with
#   it), frozen on a board; its names are re-exported here for the app and the tests;
# - Client (here): one connection over an asyncio stream, keep-alive pings, QoS 1
#   publishes kept in order in a bounded in-flight window until acknowledged (sent again,
#   flagged DUP, after a reconnect) and a bounded inbox that counts what it drops;
# - Link (mqttlink.py): the only code that connects. It waits as backoff.py says (random
#   start, full jitter, reset when stable), re-subscribes, and shows the state as
#   `up`/`down` events.
# QoS 2 is not supported: subscriptions ask for at most QoS 1.

import asyncio
import time

from mqttwire import (CONNACK, CONNECT, CONNECT_REFUSED, DISCONNECT,  # noqa: F401
                      MAX_PACKET, PINGREQ, PINGRESP, PUBACK, PUBLISH, SUBACK, SUBSCRIBE,
                      UNSUBACK, UNSUBSCRIBE, MQTTError, ProtocolError, connect, decode,
                      disconnect, header, parse, pingreq, puback, publish, subscribe,
                      unsubscribe)


class ConnectRefused(MQTTError):
    """CONNACK with a non-zero return code; `code` is that code."""

    def __init__(self, code):
        super().__init__("connection refused: %s (%d)" % (CONNECT_REFUSED[code], code))
        self.code = code


class SubscribeRefused(MQTTError):
    """SUBACK returned 0x80 (failure) for a topic filter."""


class NotConnected(MQTTError):
    """The operation needs a connection and there is none (or the broker closed it)."""


class TLSError(MQTTError):
    """The broker's certificate was refused (wrong CA, wrong name, expired ...)."""


class Full(MQTTError):
    """The QoS 1 in-flight window is full; try again after acknowledgements arrive."""


# ---- the client: one connection at a time ------------------------------------------

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
            raise ValueError("the broker must be verified: use tlsctx.client()")
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
