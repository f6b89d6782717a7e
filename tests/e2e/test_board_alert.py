"""ETSI 4.7-2 on a real board's power-on sequence: an ESP32 board whose app slot was tampered
with brings up its Wi-Fi station (the owner's sealed settings), publishes exactly one
integrity alert to a real mosquitto over mutual TLS, and takes the station down; a second
power-on into the same failure sends nothing (tests/device/board_alert.py, with the fake
`machine`, `network` and esp32 chip)."""

import json
import os
import re
import time

import paho.mqtt.client as paho

from host_tools import bundle, flashimage, keys, mpy
from tests.fakes.appimage import make_app_image
from tests.mosquitto import Broker

REPO = mpy.REPO
DEVICE = REPO / "tests" / "device"
PATH = [REPO / "tests" / "fakes", REPO / "boards" / "esp32", REPO / "boards" / "common"]


def test_tampered_esp32_board_publishes_exactly_one_alert(tmp_path):
    did = "th-alert7board"
    with Broker(tmp_path / "broker") as broker:
        got = []
        ready = []
        obs = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="observer")
        broker.paho_tls(obs)
        obs.on_connect = lambda cl, u, f, rc, p: cl.subscribe("#", 1)
        obs.on_subscribe = lambda cl, u, mid, rc, p: ready.append(True)
        obs.on_message = lambda cl, u, m: got.append((m.topic, m.payload))
        obs.connect(broker.address, broker.port)
        obs.loop_start()
        try:
            deadline = time.monotonic() + 10
            while not ready:
                assert time.monotonic() < deadline, "observer did not subscribe"
                time.sleep(0.05)
            out = _power_on_twice(tmp_path, broker, did)
            deadline = time.monotonic() + 5
            while not got and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
        finally:
            obs.loop_stop()
            obs.disconnect()
        log = broker.log()
    assert len(got) == 1, got
    topic, payload = got[0]
    alert = json.loads(payload)
    assert topic == f"dev/{did}/alert"
    assert alert["type"] == "integrity" and alert["mode"] == "alert-only"
    assert alert["device_id"] == did and "BAD_FILE_HASH" in " ".join(alert["reasons"])
    assert f"ALERT {alert['id']}" in out
    # What the broker saw from the board: one connection, one PUBLISH, no SUBSCRIBE.
    assert len(re.findall(r"New client connected from \S+ as %s " % did, log)) == 1, log
    received = re.findall(r"Received (\w+) from %s\b.*" % did, log)
    assert received.count("PUBLISH") == 1 and "SUBSCRIBE" not in received, received
    assert re.search(r"Received DISCONNECT from %s" % did, log)


def _power_on_twice(tmp_path, broker, did):
    k = tmp_path / "keys"
    keys.init(k)
    dev = broker.issue_client(did)
    work = tmp_path / "flash.bin"
    flashimage.create_blank(work, board="unix")
    flashimage.write_partition(work, "ota_0", make_app_image("esp32", "1.0.0", 12000),
                               board="unix")
    ident = {"device_id": did, "product": "iot-thermostat", "model": "TH-1", "board": "esp32",
             "cloud": {"host": broker.address, "port": broker.port, "name": broker.host}}
    flashimage.write_files(work, "fctry", {
        "anchors.json": json.dumps(keys.anchors(k)).encode(),
        "identity.json": json.dumps(ident).encode(),
        "ca.crt.der": broker.ca_der.read_bytes(),
        "device.crt.der": dev["cert_der"].read_bytes(),
        "device.key.der": dev["key_der"].read_bytes(),
        "secret.bin": os.urandom(32)})
    app = tmp_path / "app.bnd"
    bundle.build(k, ["esp32"], "1.0.0", 1, out=app, product="iot-thermostat", compile=False,
                 files={"app.py": b"def main(boot):\n    return 'ran'\n"})
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"app": str(app), "ssid": "home-net", "password": "hunter2-wifi",
                                 "port": broker.port}))
    proc = mpy.run(DEVICE / "board_alert.py", [work, REPO / "boards" / "esp32" / "board.json",
                                               cases], extra_path=PATH, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1:] == ["OK"], \
        proc.stdout[-3000:] + proc.stderr
    return proc.stdout
