# Update upload: the request body streams straight into the inactive slot through the boot
# stage's installer, chunk by chunk, yielding to the control loop between chunks.
import asyncio

from micropython import const

import verdicts
from bundle import Reject
from httpd import HTTPError

_YIELD_BYTES = const(16384)  # written between two turns of the control loop: ~1 ms of work


class Session:
    """One install at a time, pushed (receive) or pulled (puller.Puller.install): while it
    runs the updater is busy, and the control loop's gap meter counts from its start (the
    owner sees that the update never stalled control). Use: `with session:`."""

    def __init__(self, updater):
        self.up = updater

    def __enter__(self):
        self.up.busy = True
        if self.up.thermostat:
            self.up.thermostat.reset_gap()
        return self

    def __exit__(self, *exc):
        self.up.busy = False

    def installer(self, resume=None, at=0):
        """The boot stage's installer for the inactive slot, under the rules of now."""
        return self.up.boot.installer(now=self.up.clock(), resume=resume, at=at)


class Updater:
    """Receives bundles and tracks the state shown to the owner (4.3-2, 4.3-5). `clock` is
    the device's wall clock (app.wall_clock: seconds, 0 while unset)."""

    def __init__(self, boot, buf, clock, thermostat=None):
        self.boot = boot
        self.clock = clock
        self.thermostat = thermostat
        self.buf = memoryview(buf)
        self.state = {"state": "idle"}
        self.busy = False

    def session(self):
        """A Session for the next install, or None while one runs."""
        return None if self.busy else Session(self)

    def installed(self):
        m = self.boot.verified.manifest
        return {"version": m["version"], "slot": self.boot.slot, "notes": m["notes"],
                "security_fix": m["security_fix"], "security_version": m["security_version"],
                "trial": self.boot.trial}

    async def _drain(self, req):
        """Read and drop the rest of a refused upload (bounded by the route's body limit), so
        that the client, still sending, gets the verdict instead of a reset connection."""
        try:
            due = 0
            while True:
                n = await req.readinto(self.buf)
                if not n:
                    break
                due += n
                if due >= _YIELD_BYTES:  # readinto does not yield while data is there
                    due = 0
                    await asyncio.sleep_ms(0)
        except (HTTPError, asyncio.TimeoutError, OSError):
            pass

    async def receive(self, req):
        """Stream `req`'s body into the inactive slot; returns the installed manifest summary
        or raises HTTPError(409/422) with the installer's precise verdict."""
        session = self.session()
        if session is None:
            raise HTTPError(409, "another update is being received")
        with session:
            return await self._receive(req, session)

    async def _receive(self, req, session):
        total = req.content_length
        self.state = {"state": "receiving", "received": 0, "total": total}
        inst = None
        try:
            inst = session.installer()
            due = 0
            while True:
                n = await req.readinto(self.buf)
                if not n:
                    break
                inst.feed(self.buf[:n])
                self.state["received"] += n
                due += n
                if due >= _YIELD_BYTES:  # let the control loop tick (a read that waits
                    due = 0  # for the network yields as well)
                    await asyncio.sleep_ms(0)
            v = inst.finish()
        except Reject as e:
            self.state = {"state": "refused", "verdict": e.verdict, "message": e.detail}
            self.boot.log("update refused: %s" % e)
            await self._drain(req)
            raise HTTPError(409 if e.verdict == verdicts.BUSY else 422,
                            "%s: %s" % (e.verdict, e.detail))
        except (HTTPError, asyncio.TimeoutError) as e:
            msg = e.message if isinstance(e, HTTPError) else "upload stalled"
            self.state = {"state": "failed", "verdict": verdicts.TRUNCATED, "message": msg}
            raise
        except OSError as e:
            self.state = {"state": "failed", "verdict": verdicts.IO_ERROR, "message": repr(e)}
            raise HTTPError(500, "flash error while writing the update")
        finally:
            if inst is not None:
                inst.abort()
        m = v.manifest
        self.state = {"state": "installed", "version": m["version"], "slot": inst.target,
                      "notes": m["notes"], "security_fix": m["security_fix"],
                      "control_max_gap_ms": self.thermostat.window_gap_ms() if self.thermostat
                      else None}
        self.boot.log("update %s received into slot %s; restarting into it"
                      % (m["version"], inst.target))
        return dict(self.state)
