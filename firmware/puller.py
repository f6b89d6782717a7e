# Pulled updates (ETSI 4.3): the service announces a signed bundle on the fleet topic
# ({url, sha256, size, version}); the device downloads it over HTTPS in the background and
# streams it into the boot stage's installer exactly as a push does, so the same checks
# (signature, board, product, security floor, key floor, sizes, file hashes) decide.
# A dropped connection resumes where it stopped (HTTP Range); a power cut resumes from what
# the flash holds (pullstate.py). The update server must present a certificate issued by
# the manufacturer CA (the pinned /factory/ca.crt.der).
# The owner's policy decides: "auto" (default), "disabled", or "postpone" until a time.
import asyncio
import json

from micropython import const

import pullstate
import store
import verdicts
from backoff import Backoff, system_rng, uniform_ms
from bundle import MAX_PREFIX, Reject

POLICIES = ("auto", "disabled", "postpone")
POLICY_FILE = "/app/update-policy.json"  # under the data root: device configuration
MAX_POSTPONE_H = const(720)  # 30 days
SPREAD_S = const(600)  # default: a fleet starts its downloads spread over 10 minutes
MAX_SPREAD_S = const(86400)
MAX_ATTEMPTS = const(8)  # connections per download before giving up for RETRY_S
RETRY_S = const(3600)
PROGRESS_STEPS = const(4)  # "downloading" events at 0, 25, 50 and 75 %
_MAX_HEAD = const(2048)
_TIMEOUT_MS = const(15_000)  # connect, handshake, each read
_MAX_URL = const(256)


class HTTPFail(Exception):
    """The update server answered, but not with the bytes asked for."""


# --- the owner's policy ----------------------------------------------------------------

def load_policy(root, now):
    """{"policy": "auto"|"disabled"|"postpone", "until": seconds (postpone)}; a postponement
    that has run out by `now` (the device's clock, 0 while unset) reads as auto."""
    p = store.load(root + POLICY_FILE)
    if not isinstance(p, dict) or p.get("policy") not in POLICIES:
        return {"policy": "auto"}
    if p["policy"] == "postpone":
        until = p.get("until")
        if not isinstance(until, int) or (now and until <= now):
            return {"policy": "auto"}
        return {"policy": "postpone", "until": until}
    return {"policy": p["policy"]}


def set_policy(root, doc, now):
    """Validate and store {"policy": "auto"} | {"policy": "disabled"} |
    {"policy": "postpone", "hours": 1..720}. Raises ValueError saying what is wrong."""
    if not isinstance(doc, dict) or doc.get("policy") not in POLICIES:
        raise ValueError('send {"policy": "auto"}, {"policy": "disabled"} or '
                         '{"policy": "postpone", "hours": N}')
    p = doc["policy"]
    if p == "postpone":
        h = doc.get("hours")
        if sorted(doc) != ["hours", "policy"] or isinstance(h, bool) or not isinstance(h, int) \
                or not 1 <= h <= MAX_POSTPONE_H:
            raise ValueError("postpone needs \"hours\": an integer from 1 to %d" % MAX_POSTPONE_H)
        if not now:
            raise ValueError("the device clock is not set; postponing needs the time")
        rec = {"policy": p, "until": now + h * 3600}
    else:
        if len(doc) != 1:
            raise ValueError("%s takes no other field" % p)
        rec = {"policy": p}
    store.makedirs(root + POLICY_FILE.rsplit("/", 1)[0])
    store.save(root + POLICY_FILE, rec)
    return rec


# --- announcements ---------------------------------------------------------------------

def version_tuple(v):
    parts = v.split(".") if isinstance(v, str) else ()
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 5 for p in parts):
        raise ValueError("version must be MAJOR.MINOR.PATCH")
    return tuple(int(p) for p in parts)


def parse_url(url):
    """https://host[:port]/path -> (host, port, path). Nothing but https is accepted."""
    if not isinstance(url, str) or len(url) > _MAX_URL or not url.startswith("https://"):
        raise ValueError("url must be https:// and at most %d characters" % _MAX_URL)
    rest = url[8:]
    slash = rest.find("/")
    if slash <= 0:
        raise ValueError("url needs a host and a path")
    hostport, path = rest[:slash], rest[slash:]
    host, port = hostport, 443
    if ":" in hostport:
        host, p = hostport.rsplit(":", 1)
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise ValueError("bad port in url")
        port = int(p)
    for c in host:
        if not (c.isalpha() or c.isdigit() or c in ".-"):
            raise ValueError("bad host in url")
    for c in path:
        if ord(c) <= 32 or ord(c) >= 127:
            raise ValueError("url path must be printable ASCII without spaces")
    if not host:
        raise ValueError("url needs a host")
    return host, port, path


def check_offer(doc, capacity):
    """Validate an announcement strictly; returns it with `host`, `port`, `path` added."""
    if not isinstance(doc, dict):
        raise ValueError("announcement must be a JSON object")
    allowed = ("url", "sha256", "size", "version", "spread_s", "security_fix", "rollout")
    for k in doc:
        if k not in allowed:
            raise ValueError("unknown field %r" % (k,))
    for k in ("url", "sha256", "size", "version"):
        if k not in doc:
            raise ValueError("missing %s" % k)
    host, port, path = parse_url(doc["url"])
    sha = doc["sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or \
            any(c not in "0123456789abcdef" for c in sha):
        raise ValueError("sha256 must be 64 lower-case hex digits")
    size = doc["size"]
    if isinstance(size, bool) or not isinstance(size, int) or \
            not 64 < size <= capacity + MAX_PREFIX:
        raise ValueError("size out of range")
    version_tuple(doc["version"])
    spread = doc.get("spread_s", SPREAD_S)
    if isinstance(spread, bool) or not isinstance(spread, int) or not 0 <= spread <= MAX_SPREAD_S:
        raise ValueError("spread_s must be 0..%d" % MAX_SPREAD_S)
    if doc.get("security_fix", False) not in (True, False):
        raise ValueError("security_fix must be true or false")
    rollout = doc.get("rollout")
    if rollout is not None:
        rollout = pullstate.check_rollout(rollout)
    return {"url": doc["url"], "sha256": sha, "size": size, "version": doc["version"],
            "spread_s": spread, "security_fix": doc.get("security_fix", False),
            "rollout": rollout, "host": host, "port": port, "path": path}


# --- HTTPS -----------------------------------------------------------------------------

async def _open(host, port, ssl_ctx):
    """A non-blocking TLS stream to the update server (mqtt.open_tls)."""
    from mqtt import open_tls

    tls = open_tls(host, port, ssl_ctx, host)
    return asyncio.StreamReader(tls), tls


def _header(head, name):
    name = name.lower() + b":"
    for line in head.split(b"\r\n")[1:]:
        if line[:len(name)].lower() == name:
            return line[len(name):].strip().decode()
    return None


class Puller:
    """Downloads and installs announced bundles in the background. `emit(doc)` reports
    progress as events (cloud.py queues them in the outbox)."""

    def __init__(self, dev, ssl_ctx, emit=None, log=None):
        self.dev = dev
        self.root = dev.data
        self.ssl = ssl_ctx
        self.emit = emit or (lambda doc: None)
        self.log = log or dev.log
        self.offer = None
        self.state = {"state": "idle"}
        self.refused = []  # sha256 of offers that failed verification (not tried again)
        self._kick = asyncio.Event()
        self._now = False  # the owner asked: skip the fleet's spread
        self._active = False  # a download of ours holds the updater
        self._task = None

    def start(self):
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return self._task

    def policy(self):
        return load_policy(self.root, self.dev.clock())

    def announce(self, payload):
        """A message on the fleet topic. Returns None, or the reason it was ignored."""
        try:
            doc = check_offer(json.loads(payload), self.dev.capacity)
        except (ValueError, TypeError) as e:  # TypeError: bytes that are not JSON text
            self.log("update: announcement ignored: %s" % e)
            return str(e)
        installed = self.dev.boot.version or "0.0.0"
        if version_tuple(doc["version"]) <= version_tuple(installed):
            self.offer = None
            if not self._active:
                self._set({"state": "up to date", "version": installed})
            return "not newer than %s" % installed
        if not pullstate.in_cohort(doc["rollout"], self.dev.identity.get("device_id", "")):
            # A staged rollout that does not (or no longer: paused, halted) take this device.
            if self.offer is not None and not self._active:
                self.offer = None
                self._set({"state": "idle"})
                self._kick.set()  # a scheduled start is called off
            return "not in the rollout's cohort"
        if self.offer is not None and self.offer["sha256"] == doc["sha256"]:
            return None  # the retained announcement again (after a reconnect)
        if doc["sha256"] in self.refused:
            self._set({"state": "refused", "version": doc["version"]})
            return "refused or rolled back before"
        self.offer = doc
        self._event(doc, "offered")
        self._kick.set()
        return None

    def _event(self, offer, state, **more):
        """An update outcome on the events topic (docs/cloud-link.md, "Update outcomes")."""
        more["type"] = "update"
        more["state"] = state
        more["version"] = offer["version"]
        if offer.get("rollout"):
            more["rollout"] = offer["rollout"]["id"]
        self.emit(more)

    def check(self):
        """The owner (through the service) asked to check now: no spread delay."""
        self._now = True
        self._kick.set()

    def kick(self):
        """Re-read the policy (it changed)."""
        self._kick.set()

    def report_outcome(self):
        """Queue the outcome of the last pulled release once the boot knows it (confirmed,
        or rolled back with the reason); cloud.py calls it at start and after a confirm."""
        try:
            ev, sha = pullstate.outcome(self.root, self.dev.boot)
            if ev is not None:
                self.emit(ev)
                pullstate.done(self.root, ev, sha)
            if ev is not None and ev["state"] == "rolled_back" or ev is None and sha:
                self.refused.append(sha)  # a release that failed its trial is not tried again
        except OSError as e:
            self.log("update: outcome not reported (%r)" % (e,))

    def _set(self, state):
        # Shown to the owner where pushed updates show theirs (GET /api/update), unless a
        # push holds the updater.
        state["source"] = "pull"
        self.state = state
        up = getattr(self.dev, "updater", None)
        if up is not None and (self._active or not up.busy):
            up.state = state

    async def _wait(self, ms):
        """Sleep up to `ms`, or less if kicked. Returns True if kicked."""
        self._kick.clear()
        try:
            await asyncio.wait_for_ms(self._kick.wait(), ms)
            return True
        except asyncio.TimeoutError:
            return False

    async def _run(self):
        while True:
            await self._kick.wait()
            self._kick.clear()
            offer = self.offer
            if offer is None:
                self._now = False
                continue
            if offer["sha256"] in self.refused:
                self._set({"state": "refused", "version": offer["version"]})
                continue
            pol = self.policy()
            if pol["policy"] == "disabled":
                self._set({"state": "available", "version": offer["version"],
                           "policy": "disabled"})
                self.emit({"type": "update", "state": "available", "version": offer["version"],
                           "policy": "disabled"})
                continue
            if pol["policy"] == "postpone":
                self._set({"state": "postponed", "version": offer["version"],
                           "until": pol["until"]})
                self.emit({"type": "update", "state": "postponed", "version": offer["version"],
                           "until": pol["until"]})
                left = pol["until"] - self.dev.clock()
                if not await self._wait(min(max(left, 1), 3600) * 1000):
                    self._kick.set()  # look again: the postponement may be over
                continue
            if not self._now and offer["spread_s"]:
                delay = uniform_ms(system_rng, offer["spread_s"] * 1000)
                self._set({"state": "scheduled", "version": offer["version"], "in_ms": delay})
                if await self._wait(delay):
                    self._kick.set()  # something changed meanwhile: decide again
                    continue
            self._now = False
            if offer is not self.offer:
                self._kick.set()
                continue
            if await self.install(offer) is None and self.offer is offer:
                # Failed (network, server) or waiting for a trial to end: try again later,
                # or sooner when a new announcement or the owner asks.
                if not await self._wait(RETRY_S * 1000):
                    self._kick.set()

    async def install(self, offer):
        """Download `offer` with resume, streaming it into the installer; on success the
        device restarts into the new version (its self-test then confirms it)."""
        session = self.dev.updater.session()
        if session is None:
            self.log("update: a push is in progress; the pulled update waits")
            return None
        with session:
            return await self._install(offer, session)

    async def _install(self, offer, session):
        dev = self.dev
        up = dev.updater
        self._active = True
        version = offer["version"]
        dl = None
        keep = False  # a network failure keeps the partial slot for the next try
        self._set({"state": "downloading", "version": version, "received": 0,
                   "total": offer["size"], "resumed": 0})
        try:
            # After a power cut in the middle, the download goes on from what the flash holds.
            dl = pullstate.Download(session, self.root, offer["sha256"], self.log)
            dl.conns = 0
            dl.step = dl.got * PROGRESS_STEPS // offer["size"]
            self.state["received"] = self.state["from"] = dl.got
            if dl.got:
                self.log("update: %s resumes at byte %d (kept in flash)" % (version, dl.got))
            self._event(offer, "downloading", progress=100 * dl.step // PROGRESS_STEPS,
                        **({"from": dl.got} if dl.got else {}))
            backoff = Backoff(base_ms=1000, cap_ms=60_000, initial_window_ms=0)
            while dl.got < offer["size"]:
                try:
                    await self._fetch(offer, dl, up.buf)
                except (OSError, ValueError, HTTPFail, asyncio.TimeoutError) as e:
                    # ValueError: TLS refused the server (MicroPython's ssl reports it so)
                    if dl.conns >= MAX_ATTEMPTS:
                        raise HTTPFail("gave up after %d connections: %r" % (dl.conns, e))
                    wait = backoff.retry()
                    self.log("update: download interrupted at %d bytes (%r); resuming in %d ms"
                             % (dl.got, e, wait))
                    self.state["resumed"] = self.state.get("resumed", 0) + 1
                    await asyncio.sleep_ms(wait)
            v = dl.finish()
        except Reject as e:
            if e.verdict == verdicts.BUSY:  # the last update is on trial: not this bundle's fault
                self._set({"state": "waiting", "version": version, "message": e.detail})
                return None
            self.refused.append(offer["sha256"])
            self._set({"state": "refused", "version": version, "verdict": e.verdict,
                       "message": e.detail})
            self._event(offer, "refused", verdict=e.verdict, reason=e.detail[:160])
            self.log("update: pulled %s refused: %s" % (version, e))
            return None
        except (HTTPFail, OSError) as e:
            keep = True
            self._set({"state": "failed", "version": version, "message": str(e)})
            self._event(offer, "failed", error=str(e)[:120])
            self.log("update: pulled %s failed: %s" % (version, e))
            return None
        finally:
            if dl is not None:
                dl.close(keep)
            self._active = False
        inst = dl.inst
        resumed = self.state.get("resumed", 0)
        self.offer = None
        self._set({"state": "installed", "version": v.manifest["version"], "slot": inst.target,
                   "resumed": resumed, "notes": v.manifest["notes"],
                   "security_fix": v.manifest["security_fix"]})
        try:  # the next boot reports whether it confirmed itself or rolled back
            pullstate.installed(self.root, version, offer["sha256"],
                                offer["rollout"]["id"] if offer.get("rollout") else None)
        except OSError as e:
            self.log("update: outcome record not saved (%r)" % (e,))
        self._event(offer, "installed", resumed=resumed)
        self.log("update %s downloaded into slot %s (resumed %d times); restarting into it"
                 % (version, inst.target, resumed))
        dev.restart_later(2000)  # time for the event to leave the outbox
        return v

    async def _fetch(self, offer, dl, buf):
        """One connection: GET with Range from dl.got; feeds the download as bytes come."""
        dl.conns += 1
        stream, sock = await asyncio.wait_for_ms(_open(offer["host"], offer["port"], self.ssl),
                                                 _TIMEOUT_MS)
        try:
            got, size = dl.got, offer["size"]
            req = "GET %s HTTP/1.1\r\nHost: %s\r\nRange: bytes=%d-\r\nConnection: close\r\n" \
                  "User-Agent: iot-thermostat\r\n\r\n" % (offer["path"], offer["host"], got)
            stream.write(req.encode())
            await asyncio.wait_for_ms(stream.drain(), _TIMEOUT_MS)  # the handshake runs here
            head, rest = await self._head(stream, buf)
            status = head[9:12]
            skip = 0
            if status == b"206":
                cr = _header(head, b"content-range") or ""
                if cr != "bytes %d-%d/%d" % (got, size - 1, size):
                    raise HTTPFail("unexpected Content-Range %r" % cr)
            elif status == b"200":
                if _header(head, b"content-length") != str(size):
                    raise HTTPFail("size differs from the announcement")
                skip = got  # the server ignored the Range: drop what we already have
            else:
                raise HTTPFail("HTTP %s" % head[9:12].decode())
            mv = memoryview(buf)
            pending = rest
            while dl.got < size:
                if pending:
                    n = min(len(pending), len(buf))
                    mv[:n] = pending[:n]
                    pending = pending[n:]
                else:
                    n = await asyncio.wait_for_ms(stream.readinto(mv), _TIMEOUT_MS)
                    if not n:
                        raise OSError("connection closed at %d of %d bytes" % (dl.got, size))
                start = 0
                if skip:
                    start = min(skip, n)
                    skip -= start
                n = min(n, start + size - dl.got)
                if n > start:
                    dl.feed(mv[start:n])  # may raise Reject: nothing is written before the checks
                    self.state["received"] = dl.got
                    step = dl.got * PROGRESS_STEPS // size
                    if step > dl.step and dl.got < size:
                        dl.step = step  # coarse: a few outbox entries per download
                        self._event(offer, "downloading", progress=100 * step // PROGRESS_STEPS)
                await asyncio.sleep_ms(0)  # let the control loop tick
        finally:
            sock.close()

    async def _head(self, stream, buf):
        """Read the response head (bounded); returns (head bytes, body bytes read with it)."""
        mv = memoryview(buf)
        pos = 0
        while True:
            n = await asyncio.wait_for_ms(stream.readinto(mv[pos:_MAX_HEAD]), _TIMEOUT_MS)
            if not n:
                raise OSError("connection closed before the response")
            pos += n
            end = bytes(mv[:pos]).find(b"\r\n\r\n")
            if end >= 0:
                if not bytes(mv[:5]) == b"HTTP/":
                    raise HTTPFail("not an HTTP response")
                return bytes(mv[:end]), bytes(mv[end + 4:pos])
            if pos >= _MAX_HEAD:
                raise HTTPFail("response head over %d bytes" % _MAX_HEAD)
