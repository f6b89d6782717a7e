# Personal data on the device (ETSI TS 103 645 4.8, 4.11): what is kept and why (INVENTORY),
# consent per purpose (explicit opt-in, off by default, withdrawable), the owner's history of
# changes, "delete my data", and the deletion request the cloud link delivers to the service.
#
# The split. Personal data, removed by "delete my data": the heating schedule (it shows when
# someone is at home), the thermostat's name, the history of changes, the consent records and
# anything the cloud link queued under a consent (it keeps it in DIR). Device configuration,
# kept for the next user: mode, set point, hysteresis, time zone, the password, the software
# and its slots. Factory reset (factoryreset.py) removes the configuration and password too.
#
# littlefs never overwrites in place. An old copy of a record stays in a freed block, or in
# the log of its directory's metadata pair, until that block is erased for reuse; and a new
# directory erases only one block of its pair, the other keeps whatever it held before. So a
# deletion (1) removes the personal records, (2) fills the free space with a filler file and
# removes it: every free block has then been erased and rewritten; (3) rebuilds each of its
# directories from that clean space (their old pairs, whose logs hold every earlier version of
# their small files, become free), (4) fills once more. A marker file makes the deletion
# resume after a power cut; every step is idempotent. That code is in erase.py, loaded only
# while it runs. The boot stage's slot directories are
# not rebuilt (a cut there would stop the boot): one the installer makes anew can keep an old
# block as the second half of its pair, so the installer should keep its slot directories.
import os
import sys
import time

from micropython import const

import store

MAX_HISTORY = const(20)
HISTORY_DAYS = const(30)
MAX_NAME = const(32)

# The purposes that need consent, all off until the owner opts in (4.8-2). What each one
# does, and the inventory of personal data, are told in notice.json (same order).
KEYS = ("history", "telemetry", "diagnostics")


def _interrupted(root):
    for e in os.ilistdir(root):
        if e[0].endswith(".new") or e[0].endswith(".old"):
            return True
    return False


class Busy(Exception):
    """A deletion is already running."""


class Privacy:
    """Personal data under `root` (the data filesystem). `thermostat` owns the schedule."""

    def __init__(self, root, thermostat=None, clock=time.time, keep_dirs=()):
        self.root = root
        self.dir = root + "/privacy"  # personal data only; the cloud link's outbox goes here
        self.mark = root + "/.erase"
        self.thermostat = thermostat
        self.keep_dirs = list(keep_dirs)  # rebuilt (content kept) by a deletion
        self.clock = clock
        self.busy = False
        self.listeners = []  # fn(purpose, granted): e.g. the cloud link drops its outbox
        if _interrupted(root):  # a power cut stopped a deletion while it rebuilt
            import erase
            erase.recover(root)
            sys.modules.pop("erase", None)
        store.makedirs(self.dir)
        store.makedirs(self.dir + ".1")  # the second copy of the consents
        if thermostat is not None and thermostat.path:
            self._reload()
        h, raw = self.history(), store.load(self.path("history"))
        if isinstance(raw, list) and len(raw) != len(h):  # entries older than HISTORY_DAYS
            store.save(self.path("history"), h)

    def path(self, name):
        return self.dir + "/" + name + ".json"

    def _reload(self):
        # After a recovered rebuild the file may be back where the thermostat did not see it.
        from thermostat import DEFAULTS, validate
        saved = store.load_record(self.thermostat.path)[0]
        try:
            self.thermostat.settings = validate(saved, DEFAULTS) if saved else dict(DEFAULTS)
        except ValueError:
            pass

    # --- consent -------------------------------------------------------------------------

    def consents(self):
        """{purpose: {"granted": bool, "time": seconds or None}} for every purpose."""
        # Two copies (store.save_record); none readable: no consent, processing stops.
        saved = store.load_record(self.path("consents"), {})[0]
        out = {}
        for key in KEYS:
            rec = saved.get(key) if isinstance(saved, dict) else None
            rec = rec if isinstance(rec, dict) else {}
            t = rec.get("time")
            out[key] = {"granted": rec.get("granted") is True,
                        "time": t if isinstance(t, int) else None}
        return out

    def allowed(self, purpose):
        """True only while the owner's consent for `purpose` stands (the cloud link asks)."""
        return self.consents().get(purpose, {}).get("granted", False)

    def check_choices(self, choices):
        """Validate {purpose: bool}; raises ValueError with the precise reason."""
        if not isinstance(choices, dict) or not choices:
            raise ValueError("send an object of purposes, e.g. {\"telemetry\": true}")
        for k, v in choices.items():
            if k not in KEYS:
                raise ValueError("unknown purpose %r (known: %s)" % (k, ", ".join(KEYS)))
            if v is not True and v is not False:
                raise ValueError("consent for %s must be true or false" % k)

    def set_consents(self, choices):
        """Record each changed choice with the time; withdrawing stops the processing and
        removes what was kept under it. Returns the consents."""
        self.check_choices(choices)
        cur = self.consents()
        changed = [k for k, v in choices.items() if cur[k]["granted"] != v]
        if changed:
            now = int(self.clock())
            for k in changed:
                cur[k] = {"granted": choices[k], "time": now}
            store.save_record(self.path("consents"), cur)
            for k in changed:
                if not choices[k] and k == "history":
                    store.remove(self.path("history"))
                for fn in self.listeners:
                    fn(k, choices[k])
        return cur

    # --- profile and history -------------------------------------------------------------

    def profile(self):
        p = store.load(self.path("profile"), {})
        return p if isinstance(p, dict) else {}

    def check_name(self, name):
        if not isinstance(name, str) or len(name.strip()) > MAX_NAME:
            raise ValueError("the name is limited to %d characters" % MAX_NAME)
        for c in name:
            if ord(c) < 32 or ord(c) == 127:
                raise ValueError("the name may not contain control characters")
        return name.strip()

    def set_profile(self, name=None, setup=False):
        p = self.profile()
        if name is not None:
            p["name"] = self.check_name(name)
        if setup:
            p["setup"] = int(self.clock())
        store.save(self.path("profile"), p)

    def setup_done(self):
        return "setup" in self.profile()

    def history(self):
        """[[time, text], ...], newest last, without entries older than HISTORY_DAYS."""
        h = store.load(self.path("history"), [])
        if not isinstance(h, list):
            return []
        oldest = self.clock() - HISTORY_DAYS * 86400
        return [e for e in h if isinstance(e, list) and len(e) == 2
                and isinstance(e[0], int) and e[0] >= oldest]

    def note(self, patch):
        """Add the settings that changed ({name: new value}) to the history, only while the
        owner allows it."""
        if not patch or not self.allowed("history"):
            return
        parts = []
        for k in sorted(patch):
            v = patch[k]
            if k == "schedule":
                parts.append("schedule (%d entries)" % len(v))
            elif k == "utc_offset_min":
                parts.append("time zone %+d min" % v)
            else:
                parts.append("%s %s" % (k.replace("setpoint", "set point"), v))
        h = self.history()
        h.append([int(self.clock()), ", ".join(parts)[:80]])
        store.save(self.path("history"), h[-MAX_HISTORY:])

    def watch(self, thermostat):
        """Record every accepted settings change, whichever interface made it."""
        thermostat.listeners.append(self._changed)

    def _changed(self, old, new):
        self.note({k: new[k] for k in new if new[k] != old.get(k)})

    # --- the service's copy --------------------------------------------------------------

    def service_request(self):
        """The pending "delete my data at the service" request ({"id", "requested"}) that the
        cloud link must deliver, or None."""
        return store.load(self.path("service-delete"))

    def service_done(self, rid):
        """The cloud link delivered request `rid` and the service confirmed it: kept as a
        receipt the owner is shown ({"id", "requested", "confirmed"})."""
        req = self.service_request()
        if req and req.get("id") == rid:
            store.save(self.path("service-deleted"), {"id": rid, "requested": req.get(
                "requested"), "confirmed": int(self.clock())})
            store.remove(self.path("service-delete"))
            return True
        return False

    def service_receipt(self):
        """The service's confirmation of the last deletion request, or None."""
        return store.load(self.path("service-deleted"))

    # --- deletion ------------------------------------------------------------------------

    def pending(self):
        """The interrupted deletion to resume ({"wipe": [...]}) or None."""
        return store.load(self.mark)

    async def delete(self, wipe=()):
        """Delete the owner's personal data from the device and the flash (erase.py), and
        queue the same request for the service. `wipe`: further directories to empty
        (factory reset). Raises Busy while one runs. Returns what was done."""
        if self.busy:
            raise Busy()
        self.busy = True
        try:
            import erase
            result = await erase.delete(self, tuple(wipe))
            if self.thermostat is not None and self.thermostat.path:
                self._reload()
            store.remove(self.mark)
            for key in KEYS:  # every consent ended: e.g. the cloud link reloads its (now
                for fn in self.listeners:  # empty) outbox and sends the deletion request
                    fn(key, False)
            return result
        finally:
            self.busy = False
            sys.modules.pop("erase", None)

    async def resume(self):
        """Run again a deletion that a power cut interrupted (called at start)."""
        p = self.pending()
        if p is not None:
            wipe = p.get("wipe") if isinstance(p, dict) else None
            ok = tuple(w for w in wipe or () if isinstance(w, str)
                       and w.startswith(self.root + "/") and ".." not in w)
            return await self.delete(ok)
