# Post-update self-test: the new version must prove itself healthy before it is confirmed.
import asyncio
import time


async def run(thermostat, timeout_ms=5000, ticks=3):
    """Pass when the control loop has ticked `ticks` times and the sensor reads sanely.

    Returns None on success or a reason string on failure."""
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
