# Plain TLS transfer baseline: receive N bytes over TLS on the device runtime (same ssl module,
# asyncio streams and 4 KiB reads as the update path) and answer with the count.
#   micropython tls_sink.py PORT CERT.der KEY.der
import asyncio
import ssl
import sys

BUF = bytearray(4096)


async def handle(r, w):
    size = int(await r.readline())
    mv = memoryview(BUF)
    got = 0
    while got < size:
        n = await r.readinto(mv[:min(len(mv), size - got)])
        if n is None:
            continue
        if not n:
            break
        got += n
    w.write(b"%d" % got)
    await w.drain()
    w.close()
    await w.wait_closed()


async def main(port, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with open(cert, "rb") as c, open(key, "rb") as k:
        ctx.load_cert_chain(c.read(), k.read())
    await asyncio.start_server(handle, "127.0.0.1", port, ssl=ctx)
    while True:
        await asyncio.sleep(60)


asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
