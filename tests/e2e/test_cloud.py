"""The cloud link end to end: simulated devices against a real mosquitto with mutual TLS whose
certificate comes from the manufacturer CA (the CA the devices pin).

- telemetry flows only after the owner's consent, and stops when it is withdrawn;
- commands: a valid set point is applied, invalid ones are refused with an error event and
  change nothing;
- the broker stopped for a minute: no consented message lost, delivered in order once, and
  the thermostat never misses a tick; a device killed (kill -9) mid-outage loses nothing it
  had acknowledged to its outbox;
- a tampered device sends exactly one alert, and nothing else, on one connection, also
  across a power cycle;
- pulled updates, served by Debian's nginx over TLS: a download cut mid-way resumes and
  installs; the owner's policy "disabled" keeps it out until the owner allows it; `iotctl
  serve` answers byte ranges as nginx does; a power cut in the middle of a download resumes
  from the last checkpoint in flash;
- `iotctl monitor` flags an integrity alert and a burst of failed logins.
Short reconnect timings come from the devices' factory records ("cloud": {"backoff"}).
"""

import hashlib
import hmac
import json
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from click.testing import CliRunner

from host_tools import bundle, ca, flashimage, push, sim
from host_tools.cli.cloud import COMMANDS, monitor_cmd, publish_cmd
from host_tools.cloud import monitor as monitor_mod
from host_tools.cloud import updateserver
from host_tools.errors import DeviceError
from host_tools.mpy import REPO
from tests.mosquitto import Broker, free_port
from tests.nginx import Nginx
from tests.pki import Pki, _write_cert

from .conftest import wait_for

JSON = {"Content-Type": "application/json"}
OUTAGE_S = 60
FAST = {"telemetry_s": 1, "keepalive_s": 30,
        "backoff": {"base_ms": 500, "cap_ms": 2000, "initial_window_ms": 300}}


class MakerPki(Pki):
    """tests.pki over the manufacturer CA of a keys folder: the broker's certificate and the
    observer's come from the CA that devices pin."""

    def __init__(self, directory, keys_dir):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = "ca"
        maker = ca.load(keys_dir)
        self._key, self._subject, self._cert = maker.key, maker.cert.subject, maker.cert
        _write_cert(self.dir / "ca.crt", maker.cert)


@pytest.fixture
def broker(tmp_path, keydir):
    with Broker(tmp_path / "broker", pki=MakerPki(tmp_path / "pki", keydir),
                persistence=True) as b:
        yield b


class Capture:
    """Everything published on '#', seen by a host-side subscriber with a persistent session
    (it reconnects after a broker restart and gets what was queued for it)."""

    def __init__(self, broker, name="observer"):
        self.msgs = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=name, clean_session=False)
        broker.paho_tls(c)
        c.reconnect_delay_set(0.1, 0.5)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("#", 1)
        c.on_subscribe = lambda cl, u, mid, rc, p: self.ready.set()
        c.on_message = self._on_message
        c.connect(broker.address, broker.port)
        c.loop_start()
        self.client = c
        assert self.ready.wait(10), "observer did not subscribe"

    def _on_message(self, client, userdata, msg):
        try:
            data = json.loads(msg.payload)
        except ValueError:
            data = msg.payload
        with self.lock:
            self.msgs.append((msg.topic, data, msg.retain, time.monotonic()))

    def tel(self, d=None):
        """The anonymous telemetry records (topic, doc): all of them, or with `d` the ones
        of the simulated device in `d`, picked by its pseudonyms (which only the holder of
        its factory secret, here the test as the maker, can compute)."""
        key = _telemetry_key(d) if d is not None else None
        with self.lock:
            return [(t, m) for t, m, _, _ in self.msgs if t.startswith("telemetry/")
                    and (key is None or m.get("p") == _pseudonym(key, m["t"] // 86400))]

    def of(self, dev_id, kind=None):
        with self.lock:
            return [(t, d) for t, d, _, _ in self.msgs if t.startswith(f"dev/{dev_id}/")
                    and (kind is None or t.endswith("/" + kind))]

    def wait(self, pred, timeout=20.0, what="message"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                msgs = list(self.msgs)
            found = [m for m in msgs if pred(m[0], m[1])]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {timeout} s; got {self.msgs[-10:]}")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def capture(broker):
    c = Capture(broker)
    yield c
    c.close()


def new_device(path, keydir, bundle_path, broker, start=True, **cloud):
    cfg = {"host": broker.address, "port": broker.port, **FAST, **cloud}
    info = sim.create(path, keydir, bundle_path, iterations=1000, cloud=cfg)
    if not start:
        return info, None
    sim.start(path)
    sim.wait_api(path)
    return info, login(path, info, keydir)


def login(path, info, keydir):
    return push.Device(sim.https_address(path), info["password"], ca=keydir / "ca.crt",
                       name=info["device_id"])


def call(dev, method, path, doc=None):
    body = json.dumps(doc).encode() if doc is not None else None
    return dev.call(method, path, body, JSON if body else None)


def consent(dev, granted):
    status, doc = call(dev, "PUT", "/api/consent", {"telemetry": granted})
    assert status == 200 and doc["telemetry"]["granted"] is granted


def _telemetry_key(d):
    secret = flashimage.read_file(sim.image_path(d), "fctry", "secret.bin")
    return hmac.new(secret, b"iot-secure-firmware/telemetry/day", hashlib.sha256).digest()


def _pseudonym(key, day):
    """firmware/telemetry.py's pseudonym of day number `day`."""
    return hmac.new(key, b"day:%d" % day, hashlib.sha256).digest()[:8].hex()


def seqs(msgs):
    return [d["seq"] for t, d in msgs if isinstance(d, dict) and "seq" in d]


@pytest.fixture
def devices(tmp_path):
    made = []
    yield made
    for d in made:
        sim.powercut(d)


# --- consent, commands -------------------------------------------------------------------

def test_telemetry_only_with_consent_and_strict_commands(tmp_path, keydir, bundles, broker,
                                                         capture, devices):
    d = tmp_path / "dev"
    devices.append(d)
    info, dev = new_device(d, keydir, bundles["v1"], broker)
    did = info["device_id"]
    capture.wait(lambda t, m: t == f"dev/{did}/state" and m["online"], what="online state")
    capture.wait(lambda t, m: t == f"dev/{did}/events" and m["type"] == "boot", what="boot")
    time.sleep(3)  # three telemetry periods without consent: nothing
    assert capture.tel() == []

    consent(dev, True)
    capture.wait(lambda t, m: t.startswith("telemetry/"), what="telemetry")
    topic, tel = capture.tel(d)[0]
    # Minimal and anonymous (4.10-2): no device id, no seq; a pseudonym for the day.
    assert set(tel) == {"p", "t", "temperature", "target", "heating"}
    assert topic == f"telemetry/iot-thermostat/{tel['p']}" and did not in json.dumps(tel)
    assert tel["t"] % 3600 == 0 and capture.of(did, "telemetry") == []
    # ... and the notice the owner consented to names every datum it carries (4.10-3); the
    # pseudonym is no datum about the home.
    notice = json.loads((REPO / "firmware" / "notice.json").read_text())
    said = next(text for key, _, text in notice["purposes"] if key == "telemetry")
    for field, words in {"temperature": "room temperature", "target": "target temperature",
                         "heating": "whether the heating is on", "t": "time"}.items():
        assert words in said, (field, said)
    capture.wait(lambda t, m: t == f"dev/{did}/state" and m["telemetry"] is True)

    # Commands, with remote access allowed: a valid one is applied and acknowledged; the
    # owner's app reads the readings on the device's own topics.
    cmd = f"dev/{did}/cmd"
    capture.client.publish(cmd, json.dumps({"cmd": "read", "id": "r1"}), qos=1)
    capture.wait(lambda t, m: t.endswith("/events") and m.get("id") == "r1", what="r1 result")
    r1 = [m for t, m in capture.of(did, "events") if m.get("id") == "r1"][0]
    assert r1["ok"] is True and set(r1["reading"]) == {"temperature", "target", "heating"}
    capture.client.publish(cmd, json.dumps({"cmd": "set", "id": "c1",
                                            "settings": {"setpoint": 22.5}}), qos=1)
    capture.wait(lambda t, m: t.endswith("/events") and m.get("id") == "c1", what="c1 result")
    assert [m for t, m in capture.of(did, "events") if m.get("id") == "c1"][0]["ok"] is True
    assert dev.status()["thermostat"]["settings"]["setpoint"] == 22.5
    # Invalid ones: refused with a precise error event; nothing stored.
    bad = {"c2": {"cmd": "set", "id": "c2", "settings": {"setpoint": 99}},
           "c3": {"cmd": "set", "id": "c3", "settings": {"setpoint": 21}, "extra": 1},
           "c4": {"cmd": "reboot", "id": "c4"},
           "c5": {"cmd": "set", "id": "c5", "settings": {"schedule": [{"at": "25:00",
                                                                      "setpoint": 20}]}},
           "c6": {"cmd": "set", "id": "c6", "settings": {"mode": "cool"}}}
    for doc in bad.values():
        capture.client.publish(cmd, json.dumps(doc), qos=1)
    capture.client.publish(cmd, b"\xff not json {", qos=1)
    capture.wait(lambda t, m: t.endswith("/events") and m.get("id") == "c6", what="c6 result")
    capture.wait(lambda t, m: t.endswith("/events") and m.get("error") == "command is not JSON")
    results = {m["id"]: m for t, m in capture.of(did, "events") if m.get("type") == "cmd"}
    for cid in bad:
        assert results[cid]["ok"] is False, results[cid]
    assert "setpoint must be between" in results["c2"]["error"]
    assert "unknown field 'extra'" in results["c3"]["error"]
    assert "unknown command 'reboot'" in results["c4"]["error"]
    assert "HH:MM" in results["c5"]["error"]
    settings = dev.status()["thermostat"]["settings"]
    assert (settings["setpoint"], settings["schedule"], settings["mode"]) == (22.5, [], "heat")

    # Withdrawn: telemetry stops, and remote control with it.
    consent(dev, False)
    time.sleep(1.5)
    before = len(capture.tel())
    capture.client.publish(cmd, json.dumps({"cmd": "set", "id": "c7",
                                            "settings": {"setpoint": 18}}), qos=1)
    capture.wait(lambda t, m: t.endswith("/events") and m.get("id") == "c7", what="c7 result")
    c7 = [m for t, m in capture.of(did, "events") if m.get("id") == "c7"][0]
    assert c7["ok"] is False and "remote access is off" in c7["error"]
    time.sleep(2.5)
    assert len(capture.tel()) == before
    assert dev.status()["thermostat"]["settings"]["setpoint"] == 22.5

    # "Delete my data" erases the outbox with the rest, and asks the service to delete its
    # copy until the service confirms; the outbox's numbering carries on.
    status, doc = call(dev, "POST", "/api/privacy/delete", {"confirm": "DELETE"})
    assert status == 200, doc
    req = capture.wait(lambda t, m: t == f"dev/{did}/events" and m.get("type") ==
                       "privacy_delete", what="the deletion request")[0][1]
    capture.client.publish(cmd, json.dumps({"cmd": "privacy_deleted", "id": "c8",
                                            "request": req["request"]}), qos=1)
    capture.wait(lambda t, m: t.endswith("/events") and m.get("id") == "c8", what="c8 result")
    assert [m for t, m in capture.of(did, "events") if m.get("id") == "c8"][0]["ok"] is True
    priv = call(dev, "GET", "/api/privacy")[1]
    assert priv["service_request"] is None  # the owner is shown the service's confirmation
    assert priv["service_receipt"]["id"] == req["request"] and priv["service_receipt"]["confirmed"]
    status, page = dev.page("/privacy")
    assert status == 200 and b"confirmed on" in page and req["request"].encode() in page
    all_seqs = seqs(capture.of(did, "events"))
    assert sorted(all_seqs) == list(range(1, len(all_seqs) + 1))  # in order, once, no gap


# --- outage ------------------------------------------------------------------------------

def test_broker_outage_and_kill_loses_nothing(tmp_path, keydir, bundles, broker, capture,
                                              devices):
    """A (the control) keeps running through a one-minute outage; B is killed (kill -9) in
    the middle of it and powered up again while the broker is still down."""
    da, db = tmp_path / "a", tmp_path / "b"
    devices.extend([da, db])
    ia, a = new_device(da, keydir, bundles["v1"], broker)
    ib, b = new_device(db, keydir, bundles["v1"], broker)
    for dev in (a, b):
        consent(dev, True)
    ida, idb = ia["device_id"], ib["device_id"]
    for d in (da, db):
        capture.wait(lambda t, m, d=d: capture.tel(d), what=f"telemetry of {d.name}")

    # Stop right after a telemetry message, a second before the next one is due.
    n = len(capture.tel(da))
    capture.wait(lambda t, m: len(capture.tel(da)) > n, what="next telemetry")
    th0 = a.status()["thermostat"]
    t0 = time.monotonic()
    broker.stop()

    time.sleep(OUTAGE_S / 3)
    cloud_b = call(b, "GET", "/api/cloud")[1]
    acked_b = cloud_b["outbox"]["next_seq"] - 1  # every seq below next_seq was acknowledged
    assert not cloud_b["connected"] and cloud_b["telemetry_outbox"]["queued"] >= 10
    sim.powercut(db)  # kill -9, whatever it was writing
    assert sim.start(db)["mode"] == "normal"
    sim.wait_api(db)
    b = login(db, ib, keydir)
    assert call(b, "GET", "/api/cloud")[1]["telemetry_outbox"]["queued"] >= \
        cloud_b["telemetry_outbox"]["queued"]

    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t0)))
    cloud_a = call(a, "GET", "/api/cloud")[1]
    th1 = a.status()["thermostat"]
    elapsed_ms = (time.monotonic() - t0) * 1000
    assert not cloud_a["connected"] and cloud_a["telemetry_outbox"]["queued"] >= OUTAGE_S - 8
    assert cloud_a["outbox"]["dropped"] == cloud_a["telemetry_outbox"]["dropped"] == 0
    broker.start()

    for dev in (a, b):
        deadline = time.monotonic() + 30
        while True:
            c = call(dev, "GET", "/api/cloud")[1]
            if c["connected"] and c["outbox"]["queued"] == c["telemetry_outbox"]["queued"] == 0:
                break
            assert time.monotonic() < deadline, c
            time.sleep(0.2)
    time.sleep(1.0)  # the last deliveries reach the observer

    # The thermostat never waited: a tick every 250 ms all along, never a missed one.
    ticks = th1["ticks"] - th0["ticks"]
    print(f"\noutage {elapsed_ms / 1000:.0f} s: {ticks} control ticks, longest gap "
          f"{th1['max_gap_ms']} ms; A queued {cloud_a['outbox']['queued']}, B had acknowledged "
          f"up to seq {acked_b} when killed")
    assert ticks >= 0.95 * elapsed_ms / th1["tick_ms"], (ticks, elapsed_ms)
    assert th1["max_gap_ms"] < 2 * th1["tick_ms"], th1["max_gap_ms"]
    # Everything consented reached the service, once: the events as seqs 1..N without a gap
    # or a repeat; the (anonymous, unnumbered) telemetry from before, during and after the
    # outage, as many records as each device queued.
    for did, d, dev in ((ida, da, a), (idb, db, b)):
        got = seqs(capture.of(did, "events"))
        assert sorted(got) == list(range(1, max(got) + 1)), (did, got)
        queued = call(dev, "GET", "/api/cloud")[1]["telemetry_outbox"]["next_seq"] - 1
        # QoS 1 is at least once: the one record in flight when B's power was cut (or when
        # the broker went) may arrive twice, and anonymous telemetry has no seq to drop a
        # repeat by. None may be missing.
        assert queued <= len(capture.tel(d)) <= queued + 1, (did, len(capture.tel(d)), queued)
    assert len(capture.tel(da)) >= OUTAGE_S
    assert max(seqs(capture.of(idb, "events"))) > acked_b
    boots = [m for t, m in capture.of(idb, "events") if m["type"] == "boot"]
    assert len(boots) == 2  # B's restart, itself delivered after the outage


# --- alert-only mode ---------------------------------------------------------------------

def test_tampered_device_sends_exactly_one_alert(tmp_path, keydir, bundles, broker, capture,
                                                 devices):
    d = tmp_path / "dev"
    devices.append(d)
    info, _ = new_device(d, keydir, bundles["v1"], broker, start=False)
    did = info["device_id"]
    flashimage.tamper_slot(sim.image_path(d), "1.0.0", "app.mpy")
    st = sim.start(d)
    assert st["mode"] == "alert-only"
    capture.wait(lambda t, m: t == f"dev/{did}/alert", what="the alert")
    # A power cycle into the same failure (a reboot loop) does not alert again, once the
    # device has recorded the delivery (it does so after the broker's PUBACK: a cut before
    # that sends the alert again, at least once is the promise).
    deadline = time.monotonic() + 15
    while " delivered to " not in sim.log_tail(d, 10):
        assert time.monotonic() < deadline, sim.log_tail(d)
        time.sleep(0.1)
    sim.stop(d)
    assert sim.start(d)["mode"] == "alert-only"
    deadline = time.monotonic() + 15
    while "was delivered before; not sent again" not in sim.log_tail(d, 10):
        assert time.monotonic() < deadline, sim.log_tail(d)
        time.sleep(0.1)
    time.sleep(2)

    mine = capture.of(did)
    assert len(mine) == 1, mine
    topic, alert = mine[0]
    assert topic == f"dev/{did}/alert"
    assert alert["type"] == "integrity" and alert["mode"] == "alert-only"
    assert alert["device_id"] == did and "BAD_FILE_HASH" in " ".join(alert["reasons"])
    # What the broker saw from this device: one connection, one PUBLISH, no SUBSCRIBE.
    log = broker.log()
    assert len(re.findall(r"New client connected from \S+ as %s " % did, log)) == 1
    received = re.findall(r"Received (\w+) from %s\b.*" % did, log)
    assert received.count("PUBLISH") == 1 and "SUBSCRIBE" not in received, received
    assert re.search(r"Received PUBLISH from %s \(d0, q1, r0, m1, 'dev/%s/alert'" % (did, did),
                     log)
    assert re.search(r"Received DISCONNECT from %s" % did, log)


# --- pulled updates ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_v2(keydir, tmp_path_factory):
    """2.0.0 with a 384 KiB asset: long enough to cut the download in the middle."""
    meta, files = bundle.collect_app()
    files["assets/presets.bin"] = bytes(range(256)) * 1536
    out = tmp_path_factory.mktemp("pull") / "v2-big.bin"
    bundle.build(keydir, ["unix"], "2.0.0", 1, out=out, files=files, product=meta["product"],
                 notes="pulled release")
    return out


class CuttingProxy:
    """A TCP relay in front of the update server that cuts its first connection after `cut`
    bytes towards the device (a dropped connection mid-download; TLS passes through)."""

    def __init__(self, upstream_port, cut):
        self.port = free_port()
        self.upstream = upstream_port
        self.cut = cut
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            up = socket.create_connection(("127.0.0.1", self.upstream))
            limit = self.cut if self.connections == 1 else None
            threading.Thread(target=self._pipe, args=(down, up, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, down, limit), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, limit):
        sent = 0
        try:
            while limit is None or sent < limit:
                data = src.recv(16384 if limit is None else min(16384, limit - sent))
                if not data:
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def update_server(tmp_path, keydir):
    """Debian's nginx serving the bundle folder over TLS with byte ranges (tests/nginx.py)."""
    (tmp_path / "updates").mkdir()
    with Nginx(tmp_path / "nginx", keydir, tmp_path / "updates") as web:
        yield web


def test_iotctl_serve_answers_like_nginx(tmp_path, keydir, update_server):
    """`iotctl serve` (the demo's server) and nginx give a device the same answers."""
    data = bytes(range(256)) * 40
    (update_server.root / "b.bin").write_bytes(data)
    own = updateserver.UpdateServer(update_server.root, 0, keydir).start()
    ctx = ssl.create_default_context(cafile=str(keydir / "ca.crt"))
    try:
        for rng, status, body in ((None, 200, data), ("bytes=0-", 206, data),
                                  ("bytes=1000-", 206, data[1000:]),
                                  ("bytes=20000-", 416, None)):
            for base in (update_server.url(), own.url()):
                req = urllib.request.Request(base + "/b.bin", headers={"Range": rng} if rng
                                             else {})
                try:
                    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                        got = (r.status, r.read(), r.headers.get("Content-Range"))
                except urllib.error.HTTPError as e:
                    got = (e.code, None, e.headers.get("Content-Range"))
                assert got[:2] == (status, body), (base, rng, got[:1])
                if status == 206:
                    assert got[2] == f"bytes {rng[6:-1]}-{len(data) - 1}/{len(data)}"
                if status == 416:
                    assert got[2] == f"bytes */{len(data)}"
    finally:
        own.shutdown()
        own.server_close()


def test_pulled_update_resumes_after_a_dropped_connection(tmp_path, keydir, bundles, big_v2,
                                                          broker, capture, update_server,
                                                          devices):
    d = tmp_path / "dev"
    devices.append(d)
    info, dev = new_device(d, keydir, bundles["v1"], broker)
    did = info["device_id"]
    capture.wait(lambda t, m: t == f"dev/{did}/state" and m["online"], what="online")
    proxy = CuttingProxy(update_server.port, cut=160_000)
    result = CliRunner().invoke(publish_cmd, [
        str(big_v2), "--channel", "stable", "--server", f"https://127.0.0.1:{proxy.port}",
        "--broker", f"{broker.address}:{broker.port}", "--keys", str(keydir),
        "--dir", str(update_server.root), "--spread", "0", "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    ann = json.loads(result.output)["announcement"]
    assert ann["version"] == "2.0.0" and ann["size"] == big_v2.stat().st_size
    try:
        capture.wait(lambda t, m: t.endswith("/events") and m.get("type") == "update"
                     and m.get("state") == "installed", timeout=60, what="installed event")
        st = wait_for(d, lambda s: s["version"] == "2.0.0" and s["trial"] is False, timeout=60)
    finally:
        proxy.close()
    assert st["slot"] == "b" and "confirmed 2.0.0" in st["last"]
    installed = [m for t, m in capture.of(did, "events") if m.get("state") == "installed"][0]
    assert installed["resumed"] >= 1 and proxy.connections >= 2
    ranges = [r["range"] for r in update_server.requests()]
    assert ranges[0] == "bytes=0-" and any(re.fullmatch(r"bytes=[1-9]\d*-", r or "")
                                           for r in ranges[1:]), ranges
    assert all(r["status"] == 206 for r in update_server.requests())
    # Up to date now: the retained announcement does not start it again.
    dev = login(d, info, keydir)
    time.sleep(1)
    assert call(dev, "GET", "/api/cloud")[1]["pull"]["state"] == "up to date"


class StallingProxy(CuttingProxy):
    """A relay whose first connection stops passing bytes towards the device after `cut`
    bytes but stays open (a download in progress when the power goes)."""

    def __init__(self, upstream_port, cut):
        self.stalled = threading.Event()
        super().__init__(upstream_port, cut)

    def _pipe(self, src, dst, limit):
        if limit is None:
            return CuttingProxy._pipe(src, dst, None)
        sent = 0
        try:
            while sent < limit:
                data = src.recv(min(16384, limit - sent))
                if not data:
                    return
                dst.sendall(data)
                sent += len(data)
            self.stalled.set()
            while src.recv(16384):  # hold the connection; drop what comes
                pass
        except OSError:
            pass


def test_pulled_download_resumes_after_a_power_cut(tmp_path, keydir, bundles, big_v2, broker,
                                                   capture, update_server, devices):
    d = tmp_path / "dev"
    devices.append(d)
    info, dev = new_device(d, keydir, bundles["v1"], broker)
    did = info["device_id"]
    capture.wait(lambda t, m: t == f"dev/{did}/state" and m["online"], what="online")
    size = big_v2.stat().st_size
    proxy = StallingProxy(update_server.port, cut=250_000)
    try:
        updateserver.publish(big_v2, "stable", f"https://127.0.0.1:{proxy.port}",
                             (broker.address, broker.port), keydir, update_server.root,
                             spread_s=0, verify=False)
        assert proxy.stalled.wait(60), "the download did not start"
        deadline = time.monotonic() + 20
        while call(dev, "GET", "/api/cloud")[1]["pull"].get("received", 0) < 200_000:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        sim.powercut(d)  # in the middle of the download
        sim.start(d)
        st = wait_for(d, lambda s: s["version"] == "2.0.0" and s["trial"] is False, timeout=90)
    finally:
        proxy.close()
    assert st["slot"] == "b" and "confirmed 2.0.0" in st["last"]
    ranges = [r["range"] for r in update_server.requests()]
    assert len(ranges) == 2 and ranges[0] == "bytes=0-", ranges
    resumed_at = int(ranges[1][6:-1])
    assert 160_000 <= resumed_at <= 250_000, ranges  # from the last 32 KiB checkpoint
    ev = [m for t, m in capture.of(did, "events") if m.get("type") == "update"]
    assert [m["from"] for m in ev if m.get("from")] == [resumed_at]
    # Fetched in all: what the first connection took, plus the rest from the checkpoint.
    assert 250_000 + size - resumed_at < 2 * size
    # ... and the outcome reaches the service after the restart: confirmed.
    capture.wait(lambda t, m: t == f"dev/{did}/events" and m.get("state") == "confirmed",
                 what="confirmed outcome")


def test_update_policy_disabled_keeps_the_pulled_update_out(tmp_path, keydir, bundles, broker,
                                                            capture, update_server, devices):
    d = tmp_path / "dev"
    devices.append(d)
    info, dev = new_device(d, keydir, bundles["v1"], broker)
    did = info["device_id"]
    assert call(dev, "GET", "/api/update/policy") == (200, {"policy": "auto"})
    for bad in ({"policy": "never"}, {"policy": "postpone"}, {"policy": "postpone", "hours": 0},
                {"policy": "auto", "x": 1}):
        status, doc = call(dev, "PUT", "/api/update/policy", bad)
        assert status == 422, (bad, doc)
    assert call(dev, "PUT", "/api/update/policy", {"policy": "disabled"}) == \
        (200, {"policy": "disabled"})
    capture.wait(lambda t, m: t == f"dev/{did}/state" and m["online"], what="online")
    updateserver.publish(bundles["v2"], "stable", update_server.url(),
                         (broker.address, broker.port), keydir, update_server.root,
                         spread_s=0, verify=False)
    capture.wait(lambda t, m: t.endswith("/events") and m.get("state") == "available",
                 what="update available")
    time.sleep(3)
    assert update_server.requests() == []  # not even downloaded
    cloud = call(dev, "GET", "/api/cloud")[1]
    assert cloud["pull"] == {**cloud["pull"], "state": "available", "version": "2.0.0"}
    assert sim.status(d)["version"] == "1.0.0"
    # The owner is told on the updates page (4.3-2), and allows it there: installed, and the
    # device runs 2.0.0.
    status, page = dev.page("/updates")
    assert status == 200 and b"Version <b>2.0.0</b> is available" in page, page[-1500:]
    assert b"It waits for you" in page and b'value="disabled" checked' in page
    status, page = dev.page("/updates", {"policy": "sometimes"})
    assert status == 422 and call(dev, "GET", "/api/update/policy")[1] == {"policy": "disabled"}
    status, page = dev.page("/updates", {"policy": "auto"})
    assert status == 200 and b"Saved." in page
    st = wait_for(d, lambda s: s["version"] == "2.0.0" and s["trial"] is False, timeout=60)
    assert st["slot"] == "b" and len(update_server.requests()) == 1


# --- the monitor -------------------------------------------------------------------------

def test_monitor_flags_an_integrity_alert_and_a_login_burst(tmp_path, keydir, bundles, broker,
                                                            devices):
    broker_addr = f"{broker.address}:{broker.port}"
    # The monitor's session is persistent: once subscribed, what devices send while it is
    # away waits for it. Subscribe, leave, let things happen, then run `iotctl monitor`.
    ready = threading.Event()
    monitor_mod.run(keydir, broker_addr, lambda r: None, duration=10, stop=ready, ready=ready)
    assert ready.is_set()
    da, dt = tmp_path / "a", tmp_path / "tampered"
    devices.extend([da, dt])
    ia, a = new_device(da, keydir, bundles["v1"], broker)
    it, _ = new_device(dt, keydir, bundles["v1"], broker, start=False)
    flashimage.tamper_slot(sim.image_path(dt), "1.0.0", "app.mpy")
    assert sim.start(dt)["mode"] == "alert-only"
    assert a.status()["version"] == "1.0.0"  # logged in before the throttle closes
    # Someone guesses passwords on A's local API (the throttle answers 429 after a while):
    # the first failure is reported at once, the others counted into one event 5 s later.
    for _ in range(6):
        with pytest.raises(DeviceError):
            push.Device(sim.https_address(da), "wrong-password", ca=keydir / "ca.crt",
                        name=ia["device_id"]).status()
    deadline = time.monotonic() + 30
    while True:
        c = call(a, "GET", "/api/cloud")[1]  # boot + two login_failed events delivered
        if "delivered to" in sim.log_tail(dt) and c["delivered"] >= 3 \
                and not c["outbox"]["queued"]:
            break
        assert time.monotonic() < deadline, (c, sim.log_tail(dt))
        time.sleep(0.2)

    result = CliRunner().invoke(monitor_cmd, ["--broker", broker_addr, "--keys", str(keydir),
                                              "--json", "--duration", "3"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    lines = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    flags = {(x["anomaly"], x["device_id"]) for r in lines for x in r["anomalies"]}
    assert flags == {("integrity", it["device_id"]), ("login_burst", ia["device_id"])}, lines
    kinds = {(r["device_id"], r["kind"]) for r in lines}
    assert {(ia["device_id"], "state"), (ia["device_id"], "events"),
            (it["device_id"], "alert")} <= kinds
    # Without --json: one line per message, the anomalies in words, a summary per device.
    text = CliRunner().invoke(monitor_cmd, ["--broker", broker_addr, "--keys", str(keydir),
                                            "--duration", "1", "--client-id", "other"])
    assert text.exit_code == 0 and "0 anomalies" in text.output  # a new session: retained only
    assert f"{ia['device_id']}: online, version 1.0.0" in text.output


def test_monitor_rules_without_a_broker():
    m = monitor_mod.Monitor()
    now = 1_800_000_000
    for i in range(3):  # three boots in ten minutes: a reboot loop
        m.feed("dev/x/events", json.dumps({"type": "boot", "seq": i + 1, "t": now + i * 60}),
               now + i * 60)
    assert [a["anomaly"] for a in m.anomalies] == ["reboot_loop"]
    m.feed("dev/x/events", json.dumps({"type": "cmd", "seq": 9, "t": now + 200}), now + 200)
    assert m.anomalies[-1]["anomaly"] == "gap" and "4 to 8" in m.anomalies[-1]["detail"]
    for dev_id in ("a", "b", "c"):
        m.feed(f"dev/{dev_id}/telemetry", json.dumps({"t": now}), now)
    for i in range(40):  # 40 messages a minute against a fleet median of one
        m.feed("dev/noisy/telemetry", json.dumps({"t": now + i}), now + i)
    assert ("rate", "noisy") in {(a["anomaly"], a["device_id"]) for a in m.anomalies}
    assert m.feed("fleet/p/stable", b"{}") is None
    # Anonymous telemetry is counted, never attached to a device.
    rec = m.feed("telemetry/iot-thermostat/0123456789abcdef", json.dumps({"t": now}), now)
    assert rec["device_id"] is None and rec["kind"] == "telemetry" and not rec["anomalies"]
    assert m.telemetry["records"] == 1 and "0123456789abcdef" not in m.devices


def test_cloud_commands_and_help():
    runner = CliRunner()
    assert [c.name for c in COMMANDS] == ["serve", "publish", "monitor"]
    for c in COMMANDS:
        result = runner.invoke(c, ["--help"])
        assert result.exit_code == 0 and "--keys" in result.output
