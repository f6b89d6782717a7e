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
# resume after a power cut; every step is idempotent. The boot stage's slot directories are
# not rebuilt (a cut there would stop the boot): one the installer makes anew can keep an old
# block as the second half of its pair, so the installer should keep its slot directories.
import asyncio
import binascii
import os
import time

from micropython import const

import store

MAX_HISTORY = const(20)
HISTORY_DAYS = const(30)
MAX_NAME = const(32)
_RESERVE = const(8)  # free blocks left to other writers while the fill yields
_ENOSPC = const(28)
_DIR_BIT = const(0x4000)

# Purposes that need consent: (key, title, what is done). All start off (4.8-2).
PURPOSES = (
    ("history", "History of changes",
     "Keep a list of the last 20 changes to the heating on this thermostat (what and when), "
     "at most 30 days. It stays on the thermostat."),
    ("telemetry", "Remote access through the app",
     "Send the room temperature and whether the heating is on to {service} every 5 minutes, "
     "so that you can see and control the heating from the app. {service} keeps it 30 days."),
    ("diagnostics", "Error reports for the maker",
     "Send error reports (software version, error message, uptime; no temperatures, no "
     "schedule) to {maker} to fix faults. Kept 90 days."),
)

# What personal data exists, where, who uses it, why, for how long, and what removes it
# (4.8-1, 4.11-2): rendered by the privacy page and returned by GET /api/privacy.
INVENTORY = (
    ("Heating schedule (times and temperatures)", "this thermostat", "you",
     "to heat at the times you choose; it shows when someone is usually at home",
     "until you change it", "delete my data, factory reset"),
    ("Name you gave the thermostat", "this thermostat", "you",
     "to recognise it in the app and on these pages", "until you change it",
     "delete my data, factory reset"),
    ("History of changes", "this thermostat, only with your consent", "you",
     "to show who changed the heating and when", "20 changes, at most 30 days",
     "withdrawing consent, delete my data, factory reset"),
    ("Your consent choices and their time", "this thermostat; {service} gets a copy",
     "{maker}, {service}", "to do only what you allowed, and to prove it",
     "until you change them", "delete my data, factory reset"),
    ("Room temperature, heating on or off", "this thermostat, in memory only", "the thermostat",
     "to control the heating", "not stored", "-"),
    ("Room temperature, heating on or off", "{service}, only with your consent", "{service}",
     "remote access through the app", "30 days", "withdrawing consent, delete my data"),
    ("Error reports", "{maker}, only with your consent", "{maker}", "to fix faults",
     "90 days", "withdrawing consent, delete my data"),
    ("Network address, device identity", "{service}, when the thermostat connects",
     "{service}", "to deliver security updates", "connection logs 30 days",
     "delete my data (the logs)"),
    ("Password (only a salted hash)", "this thermostat", "the thermostat",
     "to let only you change its settings", "until you change it",
     "factory reset (delete my data keeps it, so the thermostat stays protected)"),
)
KEYS = tuple(p[0] for p in PURPOSES)
THIRD_PARTIES = "No advertisers and no other third parties receive any data."


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def rmtree(path):
    """Remove a file or a directory and everything in it; missing is fine."""
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        store.remove(path)
        return
    for e in entries:
        rmtree(path + "/" + e[0])
    try:
        os.rmdir(path)
    except OSError:
        pass


def _copytree(src, dst, buf):
    os.mkdir(dst)
    for e in os.ilistdir(src):
        name = e[0]
        if e[1] & _DIR_BIT:
            _copytree(src + "/" + name, dst + "/" + name, buf)
        elif not name.endswith(".tmp"):
            with open(src + "/" + name, "rb") as fi, open(dst + "/" + name, "wb") as fo:
                while True:
                    n = fi.readinto(buf)
                    if not n:
                        break
                    fo.write(buf if n == len(buf) else memoryview(buf)[:n])


def rebuild(path, keep):
    """Give directory `path` new metadata blocks (the old ones, whose logs still hold every
    earlier version of its small files, become free): copy it when `keep`, else empty it."""
    new, old = path + ".new", path + ".old"
    rmtree(new)
    if keep and _exists(path):
        _copytree(path, new, bytearray(256))
    else:
        os.mkdir(new)
    if _exists(path):
        os.rename(path, old)
    os.rename(new, path)
    rmtree(old)


def recover(root):
    """Finish or undo a directory rebuild that a power cut interrupted."""
    for e in list(os.ilistdir(root)):
        name = e[0]
        if name.endswith(".new"):
            base = root + "/" + name[:-4]
            if _exists(base):
                rmtree(root + "/" + name)
            else:
                os.rename(root + "/" + name, base)
        elif name.endswith(".old"):
            rmtree(root + "/" + name)


async def fill(root, chunk=4096):
    """Erase every free block: write a filler file until the filesystem is full, then remove
    it. Yields to the control loop except for the last few blocks. Returns blocks filled."""
    path = root + "/.fill"
    buf = bytearray(chunk)
    free = os.statvfs(root)[3]
    n = 0
    f = open(path, "wb")
    try:
        while True:
            f.write(buf)
            n += 1
            if n < free - _RESERVE:
                await asyncio.sleep_ms(0)
    except OSError as e:
        if e.args[0] != _ENOSPC:
            raise
    finally:
        try:
            f.close()
        except OSError:
            pass
        store.remove(path)
    return n


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
        recover(root)
        store.makedirs(self.dir)
        if thermostat is not None and thermostat.path:
            self._reload()
        h, raw = self.history(), store.load(self._path("history"))
        if isinstance(raw, list) and len(raw) != len(h):  # entries older than HISTORY_DAYS
            store.save(self._path("history"), h)

    def _path(self, name):
        return self.dir + "/" + name + ".json"

    def _reload(self):
        # After a recovered rebuild the file may be back where the thermostat did not see it.
        from thermostat import DEFAULTS, validate
        saved = store.load(self.thermostat.path)
        try:
            self.thermostat.settings = validate(saved, DEFAULTS) if saved else dict(DEFAULTS)
        except ValueError:
            pass

    # --- consent -------------------------------------------------------------------------

    def consents(self):
        """{purpose: {"granted": bool, "time": seconds or None}} for every purpose."""
        saved = store.load(self._path("consents"), {})
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
            store.save(self._path("consents"), cur)
            for k in changed:
                if not choices[k] and k == "history":
                    store.remove(self._path("history"))
                for fn in self.listeners:
                    fn(k, choices[k])
        return cur

    # --- profile and history -------------------------------------------------------------

    def profile(self):
        p = store.load(self._path("profile"), {})
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
        store.save(self._path("profile"), p)

    def setup_done(self):
        return "setup" in self.profile()

    def history(self):
        """[[time, text], ...], newest last, without entries older than HISTORY_DAYS."""
        h = store.load(self._path("history"), [])
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
        store.save(self._path("history"), h[-MAX_HISTORY:])

    def watch(self, thermostat):
        """Record every accepted settings change, whichever interface made it."""
        if getattr(thermostat, "watched", None) is self:
            return
        thermostat.watched = self
        update = thermostat.update

        def recorded(patch):
            old = thermostat.settings
            new = update(patch)
            self.note({k: new[k] for k in new if new[k] != old.get(k)})
            return new
        thermostat.update = recorded

    # --- the service's copy --------------------------------------------------------------

    def service_request(self):
        """The pending "delete my data at the service" request ({"id", "requested"}) that the
        cloud link must deliver, or None."""
        return store.load(self._path("service-delete"))

    def service_done(self, rid):
        """The cloud link delivered request `rid` and the service confirmed it."""
        req = self.service_request()
        if req and req.get("id") == rid:
            store.remove(self._path("service-delete"))
            return True
        return False

    # --- deletion ------------------------------------------------------------------------

    def pending(self):
        """The interrupted deletion to resume ({"wipe": [...]}) or None."""
        return store.load(self.mark)

    async def delete(self, wipe=()):
        """Delete the owner's personal data from the device and the flash, and queue the same
        request for the service. `wipe`: further directories to empty (factory reset).
        Raises Busy while one runs. Returns what was done, for the confirmation."""
        if self.busy:
            raise Busy()
        self.busy = True
        t0 = time.ticks_ms()
        try:
            rid = (self.service_request() or self.pending() or {}).get("id") \
                or binascii.hexlify(os.urandom(8)).decode()
            store.save(self.mark, {"wipe": list(wipe), "id": rid})
            th = self.thermostat
            keep = [d for d in self.keep_dirs if d not in wipe]
            if th is not None and th.path:
                settings_dir = th.path.rsplit("/", 1)[0]
                if settings_dir not in wipe:
                    if th.settings.get("schedule"):
                        th.settings = dict(th.settings, schedule=[])
                        store.save(th.path, th.settings)
                    keep.append(settings_dir)
            for d in (self.dir,) + tuple(wipe):
                rmtree(d)
            blocks = await fill(self.root)
            for d in (self.dir,) + tuple(wipe):
                rebuild(d, False)
            for d in keep:
                rebuild(d, True)
            store.save(self._path("service-delete"), {"id": rid, "requested": int(self.clock())})
            blocks += await fill(self.root)
            if th is not None and th.path:
                self._reload()
            store.remove(self.mark)
            for key in KEYS:  # every consent ended: e.g. the cloud link reloads its (now
                for fn in self.listeners:  # empty) outbox and sends the deletion request
                    fn(key, False)
            return {"deleted": ["schedule", "name", "history", "consents"], "service": "queued",
                    "request": rid, "erased_blocks": blocks,
                    "ms": time.ticks_diff(time.ticks_ms(), t0)}
        finally:
            self.busy = False

    async def resume(self):
        """Run again a deletion that a power cut interrupted (called at start)."""
        p = self.pending()
        if p is not None:
            wipe = p.get("wipe") if isinstance(p, dict) else None
            ok = tuple(w for w in wipe or () if isinstance(w, str)
                       and w.startswith(self.root + "/") and ".." not in w)
            return await self.delete(ok)
