# Factory reset (ETSI TS 103 645 4.1-1, 4.11-1): forget the owner and everything they set,
# keep the software. Removes the owner's password and the login throttle, the thermostat
# settings, the consents, the history and the rest of the personal data, erases the freed
# flash (privacy.delete) and restarts: the password on the device's own label applies again,
# never a shared one. Kept: the app slots and their state record, the factory partition.
# Started by POST /api/reset {"confirm": "RESET"} or the reset page (typed confirmation),
# both in erasepages.py, or by the button held for HOLD_MS. "Delete my data" (privacy.py) is
# the separate, lighter operation. A short press opens the login presence window instead.
import asyncio
import time

from micropython import const

from httpd import HTTPError
from privacy import Busy

HOLD_MS = const(10000)
CONFIRM = "RESET"


async def factory_reset(ctx, why):
    """Reset `ctx` (the running Device) to its factory state and schedule the restart.
    Raises privacy.Busy while a deletion runs. Returns what was done."""
    if ctx.privacy.busy:
        raise Busy()
    ctx.log("factory reset: " + why)
    ctx.sessions.logout_all()
    ctx.credentials.factory_reset()
    wipe = (ctx.credentials.owner_path.rsplit("/", 1)[0],
            ctx.thermostat.path.rsplit("/", 1)[0])
    result = await ctx.privacy.delete(wipe)
    result["deleted"] = result["deleted"] + ["settings", "password"]
    result["restarting_in_ms"] = ctx.restart_later()
    return result


async def watch_button(ctx, hold_ms=HOLD_MS, poll_ms=100):
    """Factory reset when the button is held for `hold_ms`. The button must first be seen
    released, so a stuck button (or one still held through the restart) never resets twice.
    Every press also proves physical presence: the owner may log in during a password-
    guessing attack for a short while (throttle.py)."""
    button = ctx.hal.button
    armed = False
    since = None
    while True:
        await asyncio.sleep_ms(poll_ms)
        if not button.pressed():
            armed = True
            since = None
            continue
        if not armed:
            continue
        now = time.ticks_ms()
        if since is None:
            since = now
            ctx.credentials.presence(time.time())
            ctx.log("button: presence window open for logins")
        elif time.ticks_diff(now, since) >= hold_ms:
            armed = False
            since = None
            ctx.hal.led.pattern("reset", (50, 50))  # fast blink: the owner can let go
            try:
                await factory_reset(ctx, "button held for %d s" % (hold_ms // 1000))
            except Busy:
                pass


def check_confirm(value):
    """The typed confirmation must be the word CONFIRM (any case, spaces around ignored)."""
    if not isinstance(value, str) or value.strip().upper() != CONFIRM:
        raise HTTPError(422, "type %s to confirm the factory reset" % CONFIRM)

