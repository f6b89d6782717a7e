# Plain TLS transfer baseline: receive N bytes over TLS on the device runtime and answer with
# the count. The bytes are read with the update path's own code (httpreq.Request.readinto: what
# the socket already holds at once, else an awaited read, 4 KiB at a time), with a turn of the
# event loop every 16 KiB as updater.py gives, on a connection wrapped by the API server's own
# wrapper (httpd._Tls: TCP_NODELAY): the update's figure is compared with the same transport.
#   micropython tls_sink.py PORT CERT.der KEY.der     prints READY once it listens
import asyncio
import ssl
import sys

from httpd import _Tls
from httpreq import Request

BUF = bytearray(4096)
_YIELD = 16384


async def handle(r, w):
    size = int(await r.readline())
    body = Request("POST", "/", "", {}, size, r, b"", None)
    got = due = 0
    while True:
        n = await body.readinto(BUF)
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
    await asyncio.start_server(handle, "127.0.0.1", port, ssl=_Tls(ctx))
    print("READY")
    while True:
        await asyncio.sleep(60)


asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
