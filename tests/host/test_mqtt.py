"""The cloud link's MQTT client (firmware/mqtt.py) under the MicroPython unix port.

- exact bytes of every packet, and the decoder on good, malformed and oversize input;
- property tests: hypothesis feeds broker input to the device decoder, one MicroPython
  process serving a whole test (never one per example);
- the Client and Link against a scripted broker (DUP after reconnect, keep-alive, refusals);
- against a real mosquitto with mutual TLS on loopback, checked from the host with paho-mqtt:
  publish QoS 0/1 and retain, subscribe, keep-alive pings, a broker from another CA refused,
  a device without a certificate refused, the last will on a killed device, and QoS 1
  messages published during a broker outage delivered after it, in order, once.
"""

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_tools import mpy
from tests.mosquitto import Broker, free_port, mosquitto_broker  # noqa: F401 (fixture)
from tests.pki import Pki

REPO = Path(__file__).resolve().parents[2]
DEVICE = REPO / "tests" / "device"
FIRMWARE = REPO / "firmware"
PROPS = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])


def device_env():
    env = dict(os.environ)
    env["MICROPYPATH"] = mpy.device_path("unix", [FIRMWARE])
    return env


def run_device(script, *args, heapsize=None, timeout=60):
    proc = mpy.run(DEVICE / script, [str(a) for a in args], heapsize=heapsize,
                   extra_path=[FIRMWARE], timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "OK", proc.stdout
    return proc.stdout


# ---- codec and scripted broker ----------------------------------------------------------

def test_exact_bytes_on_the_wire_and_decoder_cases():
    run_device("mqtt_wire.py")


def test_client_and_link_against_a_scripted_broker():
    # A small heap: a 256 MiB length announced by the "broker" must be refused, not allocated.
    out = run_device("mqtt_fake.py", free_port(), heapsize="256k")
    for name in ("dup_after_reconnect", "keepalive", "hostile", "refusals", "inbound", "link"):
        assert "%s ok" % name in out


# ---- property tests: the device decoder, one process per test -----------------------------

class Decoder:
    """mqtt_decode.py running under the unix port, answering batches of inputs."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [mpy.micropython_path(), "-X", "heapsize=128k", str(DEVICE / "mqtt_decode.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=device_env(), text=True)

    def batch(self, items, limit=16384):
        """Decode each byte string; answers in order. Batches stay far below a pipe's buffer."""
        self.proc.stdin.write("".join("%d %s\n" % (limit, b.hex() or "-") for b in items))
        self.proc.stdin.flush()
        out = [json.loads(self.proc.stdout.readline()) for _ in items]
        for b, r in zip(items, out):
            assert "crash" not in r, (b.hex(), r)
        return out

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=10) == 0


@pytest.fixture(scope="module")
def decoder():
    d = Decoder()
    yield d
    d.close()


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def frame(first, body):
    return bytes([first]) + varint(len(body)) + body


def ref_header(data):
    """The framing rule, independently: ('short',) | ('long',) | (length, header size)."""
    n = 0
    for i in range(1, 5):
        if i >= len(data):
            return ("short",)
        n |= (data[i] & 0x7F) << (7 * (i - 1))
        if not data[i] & 0x80:
            return (n, i + 1)
    return ("long",)


pids = st.integers(1, 0xFFFF)
topics = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="+#\x00"),
                 min_size=1, max_size=12)


@st.composite
def broker_packets(draw):
    """(bytes, expected decode) for every packet a broker may send the client."""
    kind = draw(st.sampled_from(["connack", "publish", "puback", "suback", "unsuback", "ping"]))
    if kind == "connack":
        rc = draw(st.integers(0, 5))
        sp = draw(st.booleans()) if rc == 0 else False
        return frame(0x20, bytes([sp, rc])), [2, sp, rc]
    if kind == "publish":
        topic = draw(topics)
        payload = draw(st.binary(max_size=40))
        qos = draw(st.integers(0, 1))
        retain = draw(st.booleans())
        dup = draw(st.booleans()) if qos else False
        pid = draw(pids) if qos else 0
        t = topic.encode()
        body = len(t).to_bytes(2, "big") + t + (pid.to_bytes(2, "big") if qos else b"") + payload
        first = 0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
        return frame(first, body), [3, topic, payload.hex(), qos, retain, dup, pid]
    if kind in ("puback", "unsuback"):
        pid = draw(pids)
        code = 4 if kind == "puback" else 11
        return frame(code << 4, pid.to_bytes(2, "big")), [code, pid]
    if kind == "suback":
        pid = draw(pids)
        codes = bytes(draw(st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=4)))
        return frame(0x90, pid.to_bytes(2, "big") + codes), [9, pid, codes.hex()]
    return b"\xd0\x00", [13]


@PROPS
@given(st.lists(st.binary(max_size=48), min_size=1, max_size=20), st.integers(0, 64))
def test_decoder_never_crashes_and_frames_exactly(decoder, inputs, limit):
    for data, r in zip(inputs, decoder.batch(inputs, limit)):
        h = ref_header(data) if data else ("short",)
        if h == ("long",):
            assert "err" in r, (data.hex(), r)
        elif h == ("short",):
            assert r == {"none": 1}, (data.hex(), r)
        elif h[0] > limit:
            assert "err" in r and "limit" in r["err"], (data.hex(), r)  # before any body
        elif len(data) < h[0] + h[1]:
            assert r == {"none": 1}, (data.hex(), r)
        else:
            assert "err" in r or r["used"] == h[0] + h[1], (data.hex(), r)


@PROPS
@given(broker_packets(), st.binary(max_size=8))
def test_decoder_reads_every_broker_packet_and_waits_for_the_rest(decoder, pkt, tail):
    data, expected = pkt
    prefixes = [data[:k] for k in range(len(data))]
    answers = decoder.batch([data + tail] + prefixes)
    assert answers[0] == {"p": expected, "used": len(data)}
    assert all(a == {"none": 1} for a in answers[1:]), answers


@PROPS
@given(broker_packets(), st.data())
def test_decoder_on_corrupted_packets(decoder, pkt, data):
    raw, _ = pkt
    i = data.draw(st.integers(0, len(raw) - 1))
    flipped = bytearray(raw)
    flipped[i] ^= data.draw(st.integers(1, 255))
    cut = raw[:data.draw(st.integers(0, len(raw)))]
    grown = raw[:1] + varint(len(raw) + 3)[:4] + raw[2:] + b"\x00\x00\x00"
    decoder.batch([bytes(flipped), cut, grown])  # any answer but a crash


@PROPS
@given(st.integers(16385, 268435455), st.sampled_from([0x30, 0x32, 0x90, 0x20]),
       st.binary(max_size=16))
def test_oversize_is_refused_from_the_header(decoder, length, first, body):
    (r,) = decoder.batch([bytes([first]) + varint(length) + body])
    assert "limit" in r.get("err", ""), r


# ---- against mosquitto with mutual TLS --------------------------------------------------

class Agent:
    """tests/device/mqtt_agent.py in a MicroPython process: JSON commands in, events out."""

    def __init__(self, tmp_path, broker, name="agent", **cfg):
        conf = {"host": broker.address, "server_hostname": broker.host,
                "port": broker.port, "ca": str(broker.ca_der),
                "cert": str(broker.client["cert_der"]), "key": str(broker.client["key_der"]),
                "client_id": broker.client["name"]}
        conf.update(cfg)
        path = tmp_path / ("%s.json" % name)
        path.write_text(json.dumps(conf))
        self.proc = subprocess.Popen([mpy.micropython_path(), str(DEVICE / "mqtt_agent.py"),
                                      str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=device_env(), text=True)
        self.events = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put({"ev": "exit"})

    def send(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def expect(self, ev, timeout=10.0, **fields):
        """The next event `ev` with these fields (earlier events stay in `seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                e = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no %s %s; seen %s; stderr %s" % (
                    ev, fields, self.seen, self.stderr())) from None
            self.seen.append(e)
            if e["ev"] == ev and all(e.get(k) == v for k, v in fields.items()):
                return e
            if e["ev"] == "exit":
                raise AssertionError("agent exited; seen %s; stderr %s" % (self.seen,
                                                                          self.stderr()))

    def stderr(self):
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


@pytest.fixture
def agents():
    started = []

    def start(*args, **kw):
        a = Agent(*args, **kw)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


class Observer:
    """A host-side paho-mqtt client with its own certificate from the same CA."""

    def __init__(self, broker, client_id="observer", clean=True, subscribe=()):
        self.messages = queue.Queue()
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=clean)
        broker.paho_tls(self.c)
        self.c.on_message = lambda c, u, m: self.messages.put(
            (m.topic, m.payload.decode(), m.qos, bool(m.retain)))
        self.c.on_subscribe = lambda *a: self._subscribed.set()
        self.c.on_connect = lambda *a: self._connected.set()
        self.c.connect(broker.address, broker.port, keepalive=30)
        self.c.loop_start()
        assert self._connected.wait(10), "observer did not connect"
        for topic in subscribe:
            self._subscribed.clear()
            self.c.subscribe(topic, qos=1)
            assert self._subscribed.wait(10), "observer did not subscribe"

    def get(self, timeout=10.0):
        return self.messages.get(timeout=timeout)

    def quiet(self, seconds):
        """Assert that nothing arrives for `seconds`."""
        try:
            extra = self.messages.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError("unexpected message %r" % (extra,))

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_mutual_tls_publish_subscribe_and_keepalive(mosquitto_broker, agents, tmp_path):
    b = mosquitto_broker
    obs = Observer(b, subscribe=["dev/#"])
    dev = agents(tmp_path, b, keepalive=1)
    dev.expect("up")
    # The broker took the certificate's CN as the user name (use_identity_as_username).
    assert "as device-1 (p2, c1, k1, u'device-1')" in b.log()

    dev.send(cmd="pub", topic="dev/q0", payload="zero", qos=0)
    dev.expect("pub", pid=0)
    dev.send(cmd="pub", topic="dev/q1", payload="one", qos=1, retain=True)
    dev.expect("pub")
    dev.send(cmd="acked")
    dev.expect("acked")
    got = sorted([obs.get(), obs.get()])
    assert got == [("dev/q0", "zero", 0, False), ("dev/q1", "one", 1, False)]
    late = Observer(b, client_id="late", subscribe=["dev/q1"])  # the retained copy
    assert late.get() == ("dev/q1", "one", 1, True)
    late.close()

    dev.send(cmd="sub", topic="cmd/#", qos=1)
    dev.expect("sub")
    obs.c.publish("cmd/heat", b"21.5", qos=1)
    assert dev.expect("msg", topic="cmd/heat")["payload"] == "21.5"

    time.sleep(2.3)  # idle for two keep-alive periods: pings keep the session
    dev.send(cmd="stats")
    stats = dev.expect("stats")
    assert stats["up"] and stats["connects"] == 1, stats
    assert stats["pings"] >= 2 and stats["pongs"] >= stats["pings"] - 1, stats
    log = b.log()
    assert "Received PINGREQ from device-1" in log and "Sending PINGRESP to device-1" in log
    assert not any(e["ev"] == "down" for e in dev.seen)
    dev.send(cmd="quit")
    dev.expect("bye")
    obs.close()


def test_broker_certificate_from_another_ca_wrong_name_or_expired_is_refused(tmp_path,
                                                                              agents):
    other = Pki(tmp_path / "other", "other")
    with Broker(tmp_path / "b", pki=other) as b:
        ours = Pki(tmp_path / "ours", "ours")  # the CA the device pins
        dev = agents(tmp_path, b, mode="once", ca=str(ours.ca_der))
        err = dev.expect("error")
        assert err["type"] == "TLSError" and "trusted CA" in err["msg"], err
        # The right CA but the wrong name: refused as well.
        dev = agents(tmp_path, b, name="wrongname", mode="once",
                     server_hostname="broker.example")
        err = dev.expect("error")
        assert err["type"] == "TLSError" and "CN" in err["msg"], err
        dev = agents(tmp_path, b, name="right", mode="once")
        dev.expect("connected")
    # The right CA and name, but expired: the unix port's mbedTLS checks the dates.
    expired = other.issue("old-broker", server=True, expired=True)
    with Broker(tmp_path / "old", pki=other, server=expired) as b:
        dev = agents(tmp_path, b, name="expired", mode="once")
        err = dev.expect("error")
        assert err["type"] == "TLSError" and "expired" in err["msg"], err


def test_client_without_a_valid_certificate_is_refused(mosquitto_broker, agents, tmp_path):
    b = mosquitto_broker
    dev = agents(tmp_path, b, mode="once", cert=None, key=None)
    assert dev.expect("error")["type"] in ("OSError", "NotConnected")
    stranger = Pki(tmp_path / "stranger", "stranger").issue("device-1")
    dev = agents(tmp_path, b, name="stranger", mode="once", cert=str(stranger["cert_der"]),
                 key=str(stranger["key_der"]))
    assert dev.expect("error")["type"] in ("OSError", "NotConnected")
    # A host client without a certificate fares no better.
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="nocert")
    c.tls_set(ca_certs=str(b.ca_pem))
    accepted = threading.Event()
    c.on_connect = lambda *a: accepted.set()
    try:
        c.connect(b.address, b.port)
        c.loop_start()
        assert not accepted.wait(1.0)
    except OSError:  # ssl.SSLError: refused during the handshake
        pass
    finally:
        c.loop_stop()
    log = b.log()
    assert "New client connected" not in log
    assert log.count("peer did not return a certificate") >= 2  # the device, then paho
    assert log.count("certificate verify failed") == 1  # the stranger's certificate


def test_last_will_on_a_killed_device_but_not_on_a_clean_quit(mosquitto_broker, agents,
                                                               tmp_path):
    b = mosquitto_broker
    obs = Observer(b, subscribe=["dev/status"])
    will = ["dev/status", "offline", 1, False]
    dev = agents(tmp_path, b, will=will)
    dev.expect("up")
    dev.send(cmd="quit")  # DISCONNECT: the broker discards the will
    dev.expect("bye")
    obs.quiet(0.5)
    dev = agents(tmp_path, b, name="killed", will=will)
    dev.expect("up")
    dev.proc.send_signal(signal.SIGKILL)
    assert obs.get(timeout=5) == ("dev/status", "offline", 1, False)
    obs.close()


def test_reconnect_after_broker_restart_delivers_in_order_once(tmp_path, agents):
    with Broker(tmp_path / "b", persistence=True) as b:
        # A back end with a persistent session: QoS 1 messages wait for it while it is away.
        Observer(b, client_id="backend", clean=False, subscribe=["dev/q"]).close()
        dev = agents(tmp_path, b, backoff={"base_ms": 100, "cap_ms": 400,
                                           "initial_window_ms": 0, "seed": 3})
        dev.expect("up")
        dev.send(cmd="pub", topic="dev/q", payload="m0", qos=1)
        dev.send(cmd="acked")
        dev.expect("acked")

        b.stop()
        dev.expect("down")
        for i in range(1, 6):
            dev.send(cmd="pub", topic="dev/q", payload="m%d" % i, qos=1)
            dev.expect("pub")
        dev.send(cmd="stats")
        assert len(dev.expect("stats")["inflight"]) == 5
        time.sleep(1.0)  # a few failed attempts against the stopped broker

        b.start()
        dev.expect("up", timeout=10)
        dev.send(cmd="acked")
        dev.expect("acked")
        dev.send(cmd="stats")
        stats = dev.expect("stats")
        assert stats["connects"] == 2 and stats["attempts"] > 2 and stats["inflight"] == []

        backend = Observer(b, client_id="backend", clean=False)
        got = [backend.get()[1] for _ in range(6)]
        assert got == ["m%d" % i for i in range(6)]
        backend.quiet(0.5)  # once: nothing sent twice
        backend.close()
