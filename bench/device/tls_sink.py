# Plain TLS transfer baseline: receive N bytes over TLS on the device runtime and answer with
# the count. It reads as the update path reads (firmware/httpreq.py Request.readinto: what the
# non-blocking socket already holds at once, else an awaited read; 4 KiB at a time; a turn of
# the event loop every 16 KiB as updater.py gives) on a connection set up as httpd.py sets its
# own (TCP_NODELAY), so that the update's figure is compared with the same transport.
#   micropython tls_sink.py PORT CERT.der KEY.der     prints READY once it listens
import asyncio
import ssl
import sys

BUF = bytearray(4096)
_YIELD = 16384


class _NoDelay:
    def __init__(self, ctx):
        self.ctx = ctx

    def wrap_socket(self, sock, **kw):
        sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY (no names on the unix port)
        return self.ctx.wrap_socket(sock, **kw)


async def handle(r, w):
    size = int(await r.readline())
    mv = memoryview(BUF)
    got = due = 0
    while got < size:
        want = mv[:min(len(mv), size - got)]
        n = r.s.readinto(want)
        if n is None:
            n = await r.readinto(want)
        if n is None:
            continue
        if not n:
            break
        got += n
        due += n
        if due >= _YIELD:
            due = 0
            await asyncio.sleep_ms(0)
    w.write(b"%d" % got)
    await w.drain()
    w.close()
    await w.wait_closed()


async def main(port, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with open(cert, "rb") as c, open(key, "rb") as k:
        ctx.load_cert_chain(c.read(), k.read())
    await asyncio.start_server(handle, "127.0.0.1", port, ssl=_NoDelay(ctx))
    print("READY")
    while True:
        await asyncio.sleep(60)


asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
