"""`iotctl monitor`: the service's view of the fleet (ETSI 4.10-1). Subscribes to every
device's state, events and alerts as the service, and to the anonymous telemetry
(telemetry/<product>/<pseudonym>, firmware/telemetry.py: no device id, a pseudonym that
changes every day; 4.10-2), and flags security anomalies:

- integrity: any message on dev/<id>/alert (the boot stage found modified software);
- login_burst: BURST_FAILURES or more failed logins on one device within BURST_WINDOW_S;
- reboot_loop: LOOP_BOOTS or more boots of one device within LOOP_WINDOW_S;
- rate: a device sending more than RATE_MIN messages in RATE_WINDOW_S and over RATE_FACTOR
  times the fleet's median rate (a compromised or broken device, a replay);
- gap: a jump in a device's outbox sequence numbers (its outbox dropped messages);
- update_refused: a pulled update the device refused (a bad or tampered bundle).

It also aggregates the update outcomes devices report (offered, downloading, installed,
confirmed, rolled_back with the self-test's reason, refused with the verdict, failed) per
release, and, given the rollout store (host_tools/cloud/rollout.py), records the fleet and each
outcome there and halts a staged rollout whose failures reach its threshold: the halted
announcement is published at once.

The detection is a plain class (`Monitor.feed(topic, payload, now)`), so it is tested
without a broker; `run()` connects it to one."""

import json
import statistics
import time
from collections import defaultdict, deque

BURST_FAILURES, BURST_WINDOW_S = 5, 60
LOOP_BOOTS, LOOP_WINDOW_S = 3, 600
RATE_WINDOW_S, RATE_MIN, RATE_FACTOR = 60, 30, 10
TOPICS = ("dev/+/state", "dev/+/events", "dev/+/alert", "telemetry/+/+")


class Monitor:
    """Devices, their last telemetry, and the anomalies flagged so far."""

    def __init__(self, rollouts=None, renewer=None):
        self.devices = {}  # id -> {"online", "version", "last_seen", "messages", ...}
        self.anomalies = []
        self.releases = {}  # version -> {"counts": {state: n}, "devices": {id: outcome}}
        self.rollouts = rollouts  # a rollout.Store, or None
        self.renewer = renewer  # a renewal.Renewer: answers certificate renewal requests
        self.actions = []  # (topic, doc, retain) to publish: halted rollouts, certificates
        self.telemetry = {"records": 0, "pseudonyms": set()}  # anonymous: counted, not per device
        self._fails = defaultdict(deque)  # id -> (time, count) of failed logins
        self._boots = defaultdict(deque)
        self._msgs = defaultdict(deque)
        self._seq = {}
        self._flagged = {}  # (kind, id) -> time of the last flag (no repeats within a window)

    def _device(self, dev_id):
        return self.devices.setdefault(dev_id, {"device_id": dev_id, "online": None,
                                                "version": None, "messages": 0,
                                                "telemetry": None, "last_seen": None,
                                                "alerts": 0})

    def _flag(self, kind, dev_id, now, detail, window=0):
        last = self._flagged.get((kind, dev_id))
        if window and last is not None and now - last < window:
            return None
        self._flagged[(kind, dev_id)] = now
        a = {"anomaly": kind, "device_id": dev_id, "time": now, "detail": detail}
        self.anomalies.append(a)
        return a

    def _anonymous(self, pseudonym, payload, now):
        # Telemetry names no device: it is shown and counted, never attached to one.
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            data = {"unreadable": True}
        self.telemetry["records"] += 1
        self.telemetry["pseudonyms"].add(pseudonym)
        return {"time": now, "device_id": None, "pseudonym": pseudonym, "kind": "telemetry",
                "data": data, "anomalies": []}

    @staticmethod
    def _window(q, now, span):
        while q and now - q[0][0] > span:
            q.popleft()
        return sum(n for _, n in q)

    def feed(self, topic, payload, now=None):
        """One message from the broker. Returns the record shown for it: {"time", "device_id",
        "kind", "data", "anomalies": [...]}, or None for a topic that is not a device's."""
        now = time.time() if now is None else now
        parts = topic.split("/")
        if len(parts) == 3 and parts[0] == "telemetry":
            return self._anonymous(parts[2], payload, now)
        if len(parts) != 3 or parts[0] != "dev":
            return None
        dev_id, kind = parts[1], parts[2]
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            data = {"unreadable": payload[:80].hex() if isinstance(payload, bytes) else None}
        if not isinstance(data, dict):
            data = {"value": data}
        d = self._device(dev_id)
        d["messages"] += 1
        d["last_seen"] = now
        found = []
        # Device time when it has one: a burst that happened during an outage still counts
        # as a burst when the outbox delivers it later in one go.
        t = data.get("t") if isinstance(data.get("t"), (int, float)) else now
        halted = None
        if kind == "state":
            d["online"] = data.get("online")
            d["version"] = data.get("version", d["version"])
            if self.rollouts is not None and data.get("online"):
                self.rollouts.seen(dev_id, data)
        elif kind == "telemetry":
            d["telemetry"] = {k: data.get(k) for k in ("temperature", "target", "heating")}
        elif kind == "alert":
            d["alerts"] += 1
            found.append(self._flag("integrity", dev_id, now, "integrity alert: %s" % "; ".join(
                str(r) for r in data.get("reasons") or ["(no reason given)"])))
        elif kind == "events":
            typ = data.get("type")
            if typ == "login_failed":
                n = data.get("count", 1)
                q = self._fails[dev_id]
                q.append((t, n if isinstance(n, int) and n > 0 else 1))
                total = self._window(q, t, BURST_WINDOW_S)
                if total >= BURST_FAILURES:
                    found.append(self._flag("login_burst", dev_id, now, "%d failed logins within "
                                            "%d s" % (total, BURST_WINDOW_S), BURST_WINDOW_S))
            elif typ == "boot":
                d["version"] = data.get("version", d["version"])
                q = self._boots[dev_id]
                q.append((t, 1))
                total = self._window(q, t, LOOP_WINDOW_S)
                if total >= LOOP_BOOTS:
                    found.append(self._flag("reboot_loop", dev_id, now, "%d boots within %d s"
                                            % (total, LOOP_WINDOW_S), LOOP_WINDOW_S))
            elif typ == "cert_renew" and self.renewer is not None:
                cmd = self.renewer.handle(dev_id, data)
                if cmd is not None:
                    self.actions.append(("dev/%s/cmd" % dev_id, cmd, False))
            elif typ == "update":
                self._outcome(dev_id, data)
                if data.get("state") == "refused":
                    found.append(self._flag("update_refused", dev_id, now, "refused update "
                                            "%s: %s" % (data.get("version"), data.get("verdict"))))
                if self.rollouts is not None:
                    r = self.rollouts.outcome(dev_id, data)
                    if r is not None:
                        self.actions.append((self.rollouts.topic(r),
                                             self.rollouts.announcement(r), True))
                        halted = {"rollout": r["rollout_id"], "state": r["state"],
                                  "reason": r["reason"]}
        seq = data.get("seq")
        if isinstance(seq, int) and kind in ("telemetry", "events"):
            last = self._seq.get(dev_id)
            if last is not None and seq > last + 1:
                found.append(self._flag("gap", dev_id, now, "messages %d to %d missing (outbox "
                                        "dropped them)" % (last + 1, seq - 1)))
            if last is None or seq > last:
                self._seq[dev_id] = seq
        q = self._msgs[dev_id]  # by device time: an outbox emptied after an outage is no outlier
        q.append((t, 1))
        rate = self._window(q, t, RATE_WINDOW_S)
        if rate > RATE_MIN:
            others = [self._window(self._msgs[o], t, RATE_WINDOW_S) for o in self._msgs]
            median = statistics.median(others) if others else 0
            if len(others) < 3 or rate > RATE_FACTOR * median:
                found.append(self._flag("rate", dev_id, now, "%d messages in %d s (fleet median "
                                        "%g)" % (rate, RATE_WINDOW_S, median), RATE_WINDOW_S))
        rec = {"time": now, "device_id": dev_id, "kind": kind, "data": data,
               "anomalies": [a for a in found if a]}
        if halted:
            rec["rollout"] = halted
        return rec

    def _outcome(self, dev_id, data):
        version = data.get("version")
        if not isinstance(version, str) or not isinstance(data.get("state"), str):
            return
        rel = self.releases.setdefault(version[:20], {"counts": {}, "devices": {}})
        out = {k: data[k] for k in ("state", "reason", "verdict", "error", "progress",
                                    "rollout", "running", "t") if k in data}
        rel["devices"][dev_id] = out
        rel["counts"] = {}
        for o in rel["devices"].values():
            rel["counts"][o["state"]] = rel["counts"].get(o["state"], 0) + 1

    def summary(self):
        """The closing record of `monitor --json`: devices, outcomes per release, rollouts."""
        rollouts = [self.rollouts.status(r["rollout_id"]) for r in self.rollouts.all()] \
            if self.rollouts is not None else []
        return {"kind": "summary", "device_id": None, "devices": self.devices,
                "releases": self.releases, "rollouts": rollouts, "anomalies": self.anomalies}


def format_record(rec):
    """One line for a person; the time is the device's when it sent one (a message the
    outbox delivers after an outage shows when it was made)."""
    d, kind = rec["data"], rec["kind"]
    t = d.get("t") if isinstance(d.get("t"), (int, float)) else rec["time"]
    when = time.strftime("%H:%M:%S", time.localtime(t))
    if kind == "telemetry":
        text = "%s C, target %s, heating %s" % (d.get("temperature"), d.get("target"),
                                                "on" if d.get("heating") else "off")
    elif kind == "state":
        text = ("online, version %s" % d.get("version")) if d.get("online") else "offline"
    elif kind == "alert":
        text = "INTEGRITY ALERT: " + "; ".join(str(r) for r in d.get("reasons") or [])
    else:
        text = " ".join("%s=%s" % (k, v) for k, v in sorted(d.items()) if k not in ("seq", "t"))
    seq = "#%d" % d["seq"] if isinstance(d.get("seq"), int) else ""
    who = rec["device_id"] or "anon:" + str(rec.get("pseudonym"))[:11]
    return "%s  %-16s %-9s %5s %s" % (when, who, kind, seq, text)


def run(keys_dir, broker, on_record, duration=None, count=None, client_id="iotctl-monitor",
        stop=None, ready=None, rollouts=None, renew=False):
    """Subscribe as the service and call `on_record(record)` for each message, until
    `duration` seconds, `count` records, or `stop` (a threading.Event) is set; `ready` (a
    threading.Event) is set once subscribed. The session is persistent (clean_session off),
    so alerts sent while the monitor is away wait for it. Returns the Monitor."""
    import threading

    from ..errors import DeviceError
    from .updateserver import mqtt_client, parse_broker

    host, port = parse_broker(broker) if isinstance(broker, str) else broker
    renewer = None
    if renew:
        from .renewal import Renewer
        renewer = Renewer(keys_dir)
    mon = Monitor(rollouts, renewer)
    done = stop or threading.Event()
    seen = [0]

    def on_connect(client, userdata, flags, reason, props):
        if not reason.is_failure:
            client.subscribe([(t, 1) for t in TOPICS])

    def on_subscribe(client, userdata, mid, reasons, props):
        if ready is not None:
            ready.set()

    def on_message(client, userdata, msg):
        rec = mon.feed(msg.topic, msg.payload)
        if rec is None:
            return
        while mon.actions:  # a rollout halted (no other device may start it), a certificate
            topic, doc, retain = mon.actions.pop(0)
            client.publish(topic, json.dumps(doc, sort_keys=True), qos=1, retain=retain)
        on_record(rec)
        seen[0] += 1
        if count is not None and seen[0] >= count:
            done.set()

    c = mqtt_client(keys_dir, client_id, clean=False)
    c.reconnect_delay_set(0.5, 5)  # one client: come back soon after a broker restart
    c.on_connect, c.on_message, c.on_subscribe = on_connect, on_message, on_subscribe
    try:
        c.connect(host, port, keepalive=30)
    except OSError as e:
        raise DeviceError(f"cannot reach the broker {host}:{port}: {e}") from None
    c.loop_start()
    try:
        done.wait(duration)
    except KeyboardInterrupt:
        pass
    finally:
        c.disconnect()
        c.loop_stop()
    return mon


# --- `make demo`: an outage and the outbox delivered after it --------------------------------

def outage_demo(out, keys_dir, bundle_path, console, outage_s=20):
    """A demo step (host_tools/demo.py): a device with the cloud link, a real mosquitto with
    mutual TLS, the monitor's view; the broker stops for `outage_s` while the thermostat
    keeps its tick and the outbox fills; the broker returns and the outbox is delivered in
    order. Returns a summary dict; ToolError when mosquitto is not installed."""
    import shutil
    import socket
    import subprocess
    import threading
    from pathlib import Path

    from .. import push, sim
    from ..errors import ToolError
    from . import updateserver

    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                        if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:  # `make demo` runs tools/bootstrap first, which installs it
        raise ToolError("mosquitto is not installed: apt-get install mosquitto")
    out = Path(out)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = updateserver.broker_config(keys_dir, out / "broker", port,
                                      log_path=out / "broker" / "mosquitto.log")

    def start_broker():
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return proc
            except OSError:
                time.sleep(0.05)
        proc.kill()
        raise RuntimeError("mosquitto did not start")

    broker = start_broker()
    d = out / "cloud-device"
    cloud = {"host": "127.0.0.1", "port": port, "telemetry_s": 2,
             "backoff": {"base_ms": 500, "cap_ms": 4000, "initial_window_ms": 1000}}
    stop = threading.Event()
    ready = threading.Event()
    seen = []

    def show(rec):
        if rec["device_id"] in (info["device_id"], None):  # None: anonymous telemetry
            seen.append(rec)
            console.print("  [dim]monitor[/] " + format_record(rec))
            for a in rec["anomalies"]:
                console.print(f"  [red]ANOMALY {a['anomaly']}[/]: {a['detail']}")

    try:
        info = sim.create(d, keys_dir, bundle_path, iterations=1000, cloud=cloud, speed=120)
        console.print(f"  $ iotctl sim create {d} --keys {keys_dir} --bundle {bundle_path} "
                      f"--cloud 127.0.0.1:{port} --labels {d}-labels", markup=False)
        console.print(f"  $ iotctl monitor --broker 127.0.0.1:{port} --keys {keys_dir}")
        mon = threading.Thread(target=run, args=(keys_dir, ("127.0.0.1", port), show),
                               kwargs={"stop": stop, "ready": ready}, daemon=True)
        mon.start()
        ready.wait(10)
        sim.start(d)
        sim.wait_api(d)
        dev = push.Device(sim.https_address(d), info["password"],
                          ca=Path(keys_dir) / "ca.crt", name=info["device_id"])
        time.sleep(3)
        console.print("  no telemetry yet: the owner has not consented. The owner allows it:")
        dev.call("PUT", "/api/consent", json.dumps({"telemetry": True}).encode(),
                 {"Content-Type": "application/json"})
        time.sleep(5)
        th0 = dev.status()["thermostat"]
        console.print(f"  [bold red]the broker stops for {outage_s} s[/]")
        broker.terminate()
        broker.wait()
        t0 = time.monotonic()
        while time.monotonic() - t0 < outage_s:
            time.sleep(5)
            c = dev.call("GET", "/api/cloud")[1]
            th = dev.status()["thermostat"]
            console.print(f"  offline {time.monotonic() - t0:4.0f} s: thermostat "
                          f"{th['temperature']:.2f} C, heater {'ON' if th['heating'] else 'off'}, "
                          f"{th['ticks'] - th0['ticks']} ticks since; outbox "
                          f"{c['outbox']['queued'] + c['telemetry_outbox']['queued']} queued, "
                          f"{c['outbox']['dropped'] + c['telemetry_outbox']['dropped']} dropped")
        th1 = dev.status()["thermostat"]
        queued_t = dev.call("GET", "/api/cloud")[1]["telemetry_outbox"]["queued"]
        mark = len(seen)
        console.print("  [bold green]the broker is back[/]; the device reconnects (backoff with "
                      "full jitter) and empties its outbox")
        broker = start_broker()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the outbox empty, and all of it at the monitor
            c = dev.call("GET", "/api/cloud")[1]
            last = c["outbox"]["next_seq"] - 1
            anon = sum(1 for r in seen[mark:] if r["device_id"] is None)
            if c["connected"] and not c["outbox"]["queued"] and \
                    not c["telemetry_outbox"]["queued"] and anon >= queued_t and \
                    any(r["data"].get("seq") == last for r in seen):
                break
            time.sleep(0.5)
        after = seen[mark:]
        allseq = [r["data"]["seq"] for r in seen if "seq" in r["data"]]
        in_order = allseq == list(range(allseq[0], allseq[0] + len(allseq))) if allseq else False
        anon = sum(1 for r in after if r["device_id"] is None)
        console.print(f"  delivered after the outage: {len(after)} messages ({anon} anonymous "
                      f"telemetry records, no device id, no seq); the device's events "
                      f"{'in order, once, no gap' if in_order else 'NOT in order'}; the "
                      f"longest gap between two control ticks: {th1['max_gap_ms']} ms")
        return {"delivered_after": len(after), "in_order": in_order,
                "max_gap_ms": th1["max_gap_ms"]}
    finally:
        stop.set()
        sim.stop(d)
        broker.terminate()
        broker.wait()
