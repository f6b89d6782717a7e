# Post-update self-test: the new version must prove itself healthy before it is confirmed:
# the control loop ticks, the sensor reads sanely, and the local API answers over TLS.
import asyncio
import time

import tlsctx


async def _control(thermostat, timeout_ms, ticks):
    start = time.ticks_ms()
    first = thermostat.ticks
    while thermostat.ticks - first < ticks:
        if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
            return "control loop did not tick within %d ms" % timeout_ms
        await asyncio.sleep_ms(20)
    t = thermostat.temperature
    if t is None or not -40 <= t <= 85:
        return "sensor reading %r is out of range" % (t,)
    return None


async def _api(dev, timeout_ms):
    """GET /api/health from our own server, checking its certificate like a client would."""
    if dev.server is None:
        return None  # not provisioned: there is no API to test
    try:
        with open(dev.factory + "/ca.crt.der", "rb") as f:
            ca = f.read()
    except OSError:
        return "no manufacturer CA in the factory data to check the API against"
    ctx = tlsctx.client(ca)
    name = dev.identity.get("device_id")
    dev.server.owner_peer = "127.0.0.1"  # our own request is the owner's: never evicted
    try:
        r, w = await asyncio.wait_for_ms(
            asyncio.open_connection("127.0.0.1", dev.port, ssl=ctx, server_hostname=name),
            timeout_ms)
        w.write(b"GET /api/health HTTP/1.1\r\nHost: %s\r\n\r\n" % name.encode())
        await w.drain()
        line = await asyncio.wait_for_ms(r.readline(), timeout_ms)
        w.close()
        await w.wait_closed()
    except (OSError, asyncio.TimeoutError) as e:
        return "local API did not answer: %r" % (e,)
    finally:
        dev.server.owner_peer = None
    if not line.startswith(b"HTTP/1.1 200"):
        return "local API answered %r" % (line[:40],)
    return None


async def run(dev, timeout_ms=5000, ticks=3):
    """Returns None when healthy, else the reason (shown to the owner after the rollback)."""
    return await _control(dev.thermostat, timeout_ms, ticks) or await _api(dev, timeout_ms)
