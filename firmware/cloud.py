# The application's cloud link (ETSI 4.5, 4.9, 4.10): MQTT over mutual TLS to the broker the
# factory record names, per-device topics, telemetry only with the owner's consent, remote
# commands validated as strictly as the local API's, a persisted outbox, pulled updates.
#
# Topics (<id> = the device id, also the certificate's CN and the MQTT client id):
#   dev/<id>/state      device -> service, retained, QoS 1: {"online": true, "version", ...};
#                       the will sets {"online": false} when the device vanishes
#   telemetry/<product>/<pseudonym>  device -> service, QoS 1 via its own outbox, only with
#                       consent, anonymous (telemetry.py): {"p", "t", "temperature", "target",
#                       "heating"}: no device id, no seq, a per-day pseudonym, hour-coarse time
#   dev/<id>/events     device -> service, QoS 1 via the outbox: {"seq", "t", "type", ...}
#   dev/<id>/alert      device -> service: the boot stage's integrity alert (cloudalert.py)
#   dev/<id>/cmd        service -> device, QoS 1: {"cmd": "set"|"read"|"check_update"|...,
#                       "id"}; "read" answers on dev/<id>/events with the readings: the
#                       owner's remote access, on the device's own authenticated topics
#   fleet/<product>/<channel>  service -> devices, retained: the update announcement
# docs/cloud-link.md has every payload. The thermostat never waits on any of this.
import asyncio
import json
import time

from micropython import const

import certrenew
import mqtt
import mqttlink
import telemetry
from backoff import Backoff
from httpd import HTTPError, json_response
from outbox import Outbox
from puller import Puller, load_policy, set_policy

TELEMETRY_S = const(300)  # what the privacy notice promises: every 5 minutes
KEEPALIVE_S = const(60)
MAX_CMD = const(2048)  # bytes of one command (a renewed certificate fits)
RENEW_CHECK_S = const(3600)  # how often the link looks at its certificate's age
CMD_PER_MIN = const(20)
SECURITY_FLUSH_MS = const(5_000)  # at most one login-failure event per 5 s, with a count
CHANNEL = "stable"
COMMANDS = ("set", "read", "check_update", "privacy_deleted", "cert")
_BACKOFF_KEYS = ("base_ms", "cap_ms", "initial_window_ms", "stable_ms")


def config(identity):
    """The validated "cloud" entry of the factory identity, or None (no cloud link).
    {"host", "port", "name" (TLS name, default host), "channel", "telemetry_s",
    "keepalive_s", "backoff": {base_ms, cap_ms, initial_window_ms, stable_ms}}."""
    c = identity.get("cloud") if isinstance(identity, dict) else None
    if not isinstance(c, dict):
        return None
    host, port = c.get("host"), c.get("port")
    if not isinstance(host, str) or not host or isinstance(port, bool) \
            or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("cloud: host and port are required")
    out = {"host": host, "port": port, "name": c.get("name") or host,
           "channel": c.get("channel") or CHANNEL, "telemetry_s": c.get("telemetry_s", TELEMETRY_S),
           "keepalive_s": c.get("keepalive_s", KEEPALIVE_S),
           "renew_check_s": c.get("renew_check_s", RENEW_CHECK_S), "backoff": {},
           "telemetry_day_s": c.get("telemetry_day_s", telemetry.DAY_S)}
    for k in ("telemetry_s", "keepalive_s", "renew_check_s", "telemetry_day_s"):
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 86400:
            raise ValueError("cloud: %s must be 1..86400" % k)
    if not isinstance(out["name"], str) or not isinstance(out["channel"], str) \
            or not 0 < len(out["channel"]) <= 32 or "/" in out["channel"] \
            or "+" in out["channel"] or "#" in out["channel"]:
        raise ValueError("cloud: bad name or channel")
    bo = c.get("backoff") or {}
    if not isinstance(bo, dict):
        raise ValueError("cloud: backoff must be an object")
    for k, v in bo.items():
        if k not in _BACKOFF_KEYS or isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError("cloud: bad backoff setting %r" % (k,))
        out["backoff"][k] = v
    return out


def consent(dev, purpose):
    """True only while the owner's consent for `purpose` stands."""
    return dev.privacy.allowed(purpose)


def _fields(doc, required, optional=()):
    for k in doc:
        if k not in required and k not in optional:
            raise ValueError("unknown field %r" % (k,))
    for k in required:
        if k not in doc:
            raise ValueError("missing field %r" % (k,))


class Cloud:
    """The link, its tasks and the outbox for the running device `dev`."""

    def __init__(self, dev, settings):
        self.dev = dev
        self.settings = settings
        self.log = dev.log
        ident = dev.identity
        self.id = ident["device_id"]
        base = "dev/" + self.id + "/"
        self.t_state = base + "state"
        self.anon = telemetry.Telemetry(dev.factory, ident.get("product", "iot-thermostat"),
                                        settings["telemetry_day_s"])
        self.t_events, self.t_cmd = base + "events", base + "cmd"
        self.t_fleet = "fleet/%s/%s" % (ident.get("product", "iot-thermostat"), settings["channel"])
        self.renewal = certrenew.Renewal(self)
        self.ssl = self.renewal.tls_context(self.renewal.trying or self.renewal.certs.current())
        self.privacy = dev.privacy
        # Telemetry is personal data queued under a consent: it lives with the rest of it,
        # so "delete my data" erases it with the rest (privacy.py rebuilds that directory).
        self.outbox = Outbox(self.privacy.dir + "/outbox")
        # Anonymous telemetry has its own outbox: its numbering never leaves the device, and
        # the events' seq stays gap-free for the service's gap check.
        self.t_outbox = Outbox(self.privacy.dir + "/telemetry", numbered=False)
        self.client = mqtt.Client(self.id, settings["host"], settings["port"], self.ssl,
                                  server_hostname=settings["name"],
                                  keepalive_s=settings["keepalive_s"],
                                  will=(self.t_state, b'{"online":false}', 1, True))
        self.link = mqttlink.Link(self.client, Backoff(**settings["backoff"]), log=self.log)
        self.puller = Puller(dev, self.ssl, emit=self.event, log=self.log)
        self.delivered = 0
        self.commands = 0
        self._cmd_times = []
        self._login_failures = 0
        self._throttled = 0
        self._security_ev = asyncio.Event()
        self._delete_due = False
        self.privacy.listeners.append(self._consent_changed)
        dev.credentials.listeners.append(self._failed)  # every refused login counts

    # --- start ----------------------------------------------------------------------------

    def start(self):
        st = self.dev.boot.state()
        self.event({"type": "boot", "version": self.dev.boot.version, "slot": self.dev.boot.slot,
                    "trial": self.dev.boot.trial, "last": st["last"][:100]})
        self.puller.report_outcome()  # a pulled release confirmed or rolled back before
        return [asyncio.create_task(c) for c in (
            self._run(), self._deliver(self.outbox), self._deliver(self.t_outbox),
            self._telemetry(), self._receive(), self._security(), self.renewal.run())]

    async def _run(self):
        await self.link.subscribe(self.t_cmd, 1)  # recorded now, renewed on every connect
        await self.link.subscribe(self.t_fleet, 1)
        self.link.start()
        self.puller.start()
        while True:
            await self.link.up.wait()
            self.renewal.connected()  # a renewed certificate on its first try: accepted
            await self._publish_state()
            await self._send_delete_request()
            await self.renewal.request_if_due()
            await self.link.down.wait()

    # --- what goes out --------------------------------------------------------------------

    def event(self, doc):
        """Queue an event in the outbox (sent in order once the link is up)."""
        t = self.dev.clock()
        if t:
            doc["t"] = t
        self._queue(self.t_events, doc, "e")

    def _queue(self, topic, doc, kind):
        try:
            self.outbox.put(topic, doc, kind)
        except (OSError, ValueError) as e:  # a full or busy filesystem: counted as a drop
            self.log("cloud: not queued (%r): %s" % (e, topic))

    def state(self):
        return {"online": True, "version": self.dev.boot.version, "slot": self.dev.boot.slot,
                "telemetry": consent(self.dev, "telemetry"), "channel": self.settings["channel"],
                "outbox_dropped": self.outbox.dropped}

    async def _publish_state(self):
        try:
            await self.link.publish(self.t_state, json.dumps(self.state()).encode(), 1, True)
        except mqtt.MQTTError as e:  # Full or NotConnected: the next connect sends it
            self.log("cloud: state not sent (%r)" % (e,))

    async def _send_delete_request(self):
        # "Delete my data" also asks the service to delete its copy (privacy.py); the request
        # is sent on every connect until the service confirms it (command privacy_deleted).
        self._delete_due = False
        req = self.privacy.service_request()
        if req:
            try:
                await self.link.publish(self.t_events, json.dumps(
                    {"type": "privacy_delete", "request": req.get("id"),
                     "requested": req.get("requested")}).encode(), 1)
            except mqtt.MQTTError:
                pass

    async def _deliver(self, ob):
        # One entry in flight at a time: the order on the wire is the outbox's order, and
        # an entry is removed only once the broker acknowledged it (across reconnects).
        while True:
            await ob.wait()
            await self.link.up.wait()
            e = ob.peek()
            if e is None:
                continue
            seq, topic, payload = e
            try:
                pid = await self.link.publish(topic, payload, 1)
            except mqtt.Full:
                await asyncio.sleep_ms(200)
                continue
            except ValueError as err:  # over the packet limit: it can never be sent
                self.log("cloud: outbox entry %d dropped (%s)" % (seq, err))
                ob.remove(seq)
                continue
            await self.client.wait_acked(pid)
            try:
                ob.remove(seq)
            except OSError as err:  # e.g. a full filesystem: sent again later, same seq
                self.log("cloud: outbox entry %d not removed (%r)" % (seq, err))
                await asyncio.sleep_ms(1000)
                continue
            self.delivered += 1

    async def _telemetry(self):
        th = self.dev.thermostat
        while True:
            await asyncio.sleep_ms(self.anon.period_ms(self.settings["telemetry_s"]))
            if th.temperature is None or not consent(self.dev, "telemetry"):
                continue
            rec = self.anon.record(th.temperature, th.target(), th.heating, self.dev.clock())
            if rec is not None:
                try:
                    self.t_outbox.put(rec[0], rec[1], "t")
                except (OSError, ValueError) as e:
                    self.log("cloud: telemetry not queued (%r)" % (e,))

    def _consent_changed(self, purpose, granted):
        try:
            if purpose == "telemetry" and not granted:
                n = self.t_outbox.purge("t")  # withdrawn: what was kept under it goes too
                if n:
                    self.log("cloud: %d queued telemetry messages removed (consent withdrawn)"
                             % n)
            else:
                self.outbox.reload()  # a deletion may have emptied the directory
                self.t_outbox.reload()
        except OSError as e:
            self.log("cloud: outbox not updated after a consent change (%r)" % (e,))
        if purpose == "telemetry" and self.link.is_up:
            asyncio.create_task(self._publish_state())
        if self.link.is_up and not self._delete_due and self.privacy.service_request():
            self._delete_due = True  # a deletion calls this once per purpose: send once
            asyncio.create_task(self._send_delete_request())

    # --- security events --------------------------------------------------------------------

    def _failed(self, throttled):
        # Every refused login: a wrong password, or a try while throttled (someone keeps
        # guessing), through whichever interface (Credentials.listeners).
        self._login_failures += 1
        self._throttled += throttled
        self._security_ev.set()

    async def _security(self):
        # The first failure goes out at once; later ones are counted and sent as one event
        # per SECURITY_FLUSH_MS, so a password-guessing client cannot flood the outbox and
        # push the owner's telemetry out of it.
        while True:
            await self._security_ev.wait()
            self._security_ev.clear()
            n, self._login_failures = self._login_failures, 0
            t, self._throttled = self._throttled, 0
            if n:
                self.event({"type": "login_failed", "count": n, "throttled": t})
            await asyncio.sleep_ms(SECURITY_FLUSH_MS)

    # --- what comes in --------------------------------------------------------------------

    async def _receive(self):
        while True:
            topic, payload, retained = await self.link.message()
            if topic == self.t_cmd:
                if retained:  # a stale command must not replay at every connect
                    self.log("cloud: retained command ignored")
                    continue
                self.command(payload)
            elif topic == self.t_fleet:
                self.puller.announce(payload)

    def _rate_ok(self):
        now = time.ticks_ms()
        self._cmd_times = [t for t in self._cmd_times if time.ticks_diff(now, t) < 60_000]
        if len(self._cmd_times) >= CMD_PER_MIN:
            return False
        self._cmd_times.append(now)
        return True

    def command(self, payload):
        """Validate and run one command; the result goes out as an event. Nothing is stored
        unless every field is valid. Returns True when it was applied."""
        cid = None
        name = None
        try:
            if len(payload) > MAX_CMD:
                raise ValueError("command over %d bytes" % MAX_CMD)
            try:
                doc = json.loads(payload)
            except (ValueError, TypeError):
                raise ValueError("command is not JSON")
            if not isinstance(doc, dict):
                raise ValueError("command must be a JSON object")
            cid = doc.get("id")
            if cid is not None and not (isinstance(cid, str) and 0 < len(cid) <= 40
                                        and all(c.isalpha() or c.isdigit() or c in "-_."
                                                for c in cid)):
                cid = None
                raise ValueError("id must be 1 to 40 letters, digits, '-', '_' or '.'")
            name = doc.get("cmd")
            if not self._rate_ok():
                raise ValueError("more than %d commands a minute" % CMD_PER_MIN)
            if name == "set":
                _fields(doc, ("cmd", "settings"), ("id",))
                if not consent(self.dev, "telemetry"):
                    raise ValueError("remote access is off: the owner has not allowed it")
                self.dev.thermostat.update(doc["settings"])  # validates, then persists
            elif name == "read":  # the owner's remote view, on the device's own topic
                _fields(doc, ("cmd",), ("id",))
                if not consent(self.dev, "telemetry"):
                    raise ValueError("remote access is off: the owner has not allowed it")
                th = self.dev.thermostat
                t = th.temperature
                reading = {"temperature": None if t is None else round(t, 1), "target": th.target(),
                           "heating": th.heating}
            elif name == "check_update":
                _fields(doc, ("cmd",), ("id",))
                self.puller.check()
            elif name == "cert":
                _fields(doc, ("cmd", "cert"), ("id",))
                self.renewal.take(doc["cert"])
            elif name == "privacy_deleted":
                _fields(doc, ("cmd", "request"), ("id",))
                if not self.privacy.service_done(doc["request"]):
                    raise ValueError("no pending deletion request %r" % (doc["request"],))
            else:
                raise ValueError("unknown command %r" % (name,))
        except (ValueError, OSError) as e:  # OSError: the settings could not be saved
            self.log("cloud: command refused: %s" % e)
            self.event({"type": "cmd", "id": cid, "cmd": name if name in COMMANDS else None,
                        "ok": False, "error": str(e)[:160]})
            return False
        self.commands += 1
        ev = {"type": "cmd", "id": cid, "cmd": name, "ok": True}
        if name == "read":
            ev["reading"] = reading
        self.event(ev)
        return True

    def status(self):
        c = self.client
        s = self.settings
        return {"configured": True, "broker": "%s:%d" % (s["host"], s["port"]),
                "connected": self.link.is_up, "connects": self.link.connects,
                "attempts": self.link.attempts,
                "last_error": repr(self.link.last_error) if self.link.last_error else None,
                "outbox": self.outbox.stats(), "telemetry_outbox": self.t_outbox.stats(),
                "delivered": self.delivered,
                "inflight": len(c.inflight), "commands": self.commands,
                "telemetry": consent(self.dev, "telemetry"),
                "telemetry_s": self.settings["telemetry_s"], "channel": self.settings["channel"],
                "update_policy": load_policy(self.dev.data, self.dev.clock()),
                "pull": self.puller.state,
                "certificate": self.renewal.status()}


def start(dev):
    """Start the cloud link of `dev` if its factory record names a broker; returns the
    Cloud, or None. Also adds the API routes when the local API runs."""
    if dev.server is not None:
        register(dev.server, dev)
    try:
        settings = config(dev.identity)
    except ValueError as e:
        dev.log("cloud: factory record: %s; cloud link off" % e)
        return None
    if settings is None:
        dev.log("cloud: no broker in the factory record; cloud link off")
        return None
    try:
        c = Cloud(dev, settings)
    except (OSError, ValueError) as e:  # no device certificate or key
        dev.log("cloud: cannot start (%r); cloud link off" % (e,))
        return None
    dev.cloud = c
    c.start()
    dev.log("cloud: link to %s:%d started" % (settings["host"], settings["port"]))
    return c


def register(srv, ctx):
    """The cloud's part of the local API (start() adds it once): GET /api/cloud, and the
    owner's update policy, GET/PUT /api/update/policy."""

    @srv.route("GET", "/api/cloud")
    async def cloud_get(req):
        ctx.sessions.check(req)
        c = ctx.cloud
        if c is None:
            return json_response({"configured": False,
                                  "update_policy": load_policy(ctx.data, ctx.clock())})
        return json_response(c.status())

    @srv.route("GET", "/api/update/policy")
    async def policy_get(req):
        ctx.sessions.check(req)
        return json_response(load_policy(ctx.data, ctx.clock()))

    @srv.route("PUT", "/api/update/policy", max_body=256)
    async def policy_put(req):
        ctx.sessions.check(req)
        doc = await req.json(256)
        try:
            rec = set_policy(ctx.data, doc, ctx.clock())
        except ValueError as e:
            raise HTTPError(422, str(e))
        c = ctx.cloud
        if c is not None:
            c.event({"type": "update_policy", "policy": rec["policy"]})
            c.puller.kick()
        return json_response(rec)
