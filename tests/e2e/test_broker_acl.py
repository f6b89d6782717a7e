"""The broker configuration `iotctl serve`/the demo write (updateserver.broker_config), with
real mosquitto: a device may publish anonymous telemetry (telemetry/<product>/<pseudonym>)
and its own dev/<id>/ topics, never another device's; the service reads both. An ACL that
let no device publish telemetry would silently drop it (MQTT 3.1.1 acknowledges anyway)."""

import json
import ssl
import subprocess
import threading
import time

import paho.mqtt.client as paho
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from host_tools import ca
from host_tools.cloud import updateserver
from tests.mosquitto import MOSQUITTO, free_port
from tests.system import need


def _device_client(keydir, tmp_path, device_id):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue_device(ca.load(keydir), device_id, key.public_key())
    crt, pem = tmp_path / f"{device_id}.crt", tmp_path / f"{device_id}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=device_id)
    c.tls_set(ca_certs=str(keydir / "ca.crt"), certfile=str(crt), keyfile=str(pem),
              tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return c


def test_devices_publish_anonymous_telemetry_and_only_their_own_topics(keydir, tmp_path):
    need(MOSQUITTO, "mosquitto")
    port = free_port()
    conf = updateserver.broker_config(keydir, tmp_path / "broker", port)
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        got, ready = [], threading.Event()
        svc = updateserver.mqtt_client(keydir, "service-test")
        svc.on_connect = lambda cl, u, f, rc, p: cl.subscribe([("telemetry/#", 1), ("dev/#", 1)])
        svc.on_subscribe = lambda cl, u, mid, rc, p: ready.set()
        svc.on_message = lambda cl, u, m: got.append(m.topic)
        for _ in range(100):
            try:
                svc.connect("127.0.0.1", port)
                break
            except OSError:
                time.sleep(0.1)
        svc.loop_start()
        assert ready.wait(10), "service did not subscribe"
        dev = _device_client(keydir, tmp_path, "th-aaaaaaaaaaaa")
        dev.connect("127.0.0.1", port)
        dev.loop_start()
        for topic in ("telemetry/iot-thermostat/0123456789abcdef", "dev/th-aaaaaaaaaaaa/state",
                      "dev/th-bbbbbbbbbbbb/state", "dev/th-bbbbbbbbbbbb/telemetry",
                      "telemetry/iot-thermostat/x/extra"):
            dev.publish(topic, json.dumps({"x": 1}), qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(got) < 2:
            time.sleep(0.05)
        time.sleep(0.5)  # anything refused would have arrived by now
        assert sorted(got) == ["dev/th-aaaaaaaaaaaa/state",
                               "telemetry/iot-thermostat/0123456789abcdef"], got
        dev.loop_stop()
        svc.loop_stop()
    finally:
        proc.terminate()
        proc.wait(10)
