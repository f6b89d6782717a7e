"""Device certificate renewal over the cloud link (firmware/certrenew.py,
host_tools/cloud/renewal.py), end to end with a certificate that expires within a minute: the
device asks once 80 % of its lifetime has passed, `iotctl monitor --renew-certs` issues a new
certificate for the device's own key, the device connects with it once and keeps it; after
the old one has expired (the broker refuses it), a broker restart finds the device
reconnecting with the renewed certificate, and after a reboot its local API presents it too."""

import datetime
import socket
import ssl
import threading
import time

import paho.mqtt.client as paho
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from host_tools import ca, flashimage, sim
from host_tools.cloud import monitor as monitor_mod

from .test_cloud import broker, capture, new_device  # noqa: F401 (fixtures)

LIFETIME_S = 50
PASSED_S = 26  # of its lifetime, at the start: due (80 %) 14 s later, expired 24 s later


def _pem(der):
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)


def test_a_device_renews_its_certificate_and_keeps_its_link(tmp_path, keydir, bundles, broker,
                                                            capture):
    d = tmp_path / "dev"
    info, _ = new_device(d, keydir, bundles["v1"], broker, start=False, renew_check_s=1)
    did = info["device_id"]
    img = sim.image_path(d)
    factory = x509.load_der_x509_certificate(flashimage.read_file(img, "fctry",
                                                                  "device.crt.der"))
    maker = ca.load(keydir)
    nb = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - \
        datetime.timedelta(seconds=PASSED_S)
    na = nb + datetime.timedelta(seconds=LIFETIME_S)
    ekus = list(factory.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    short = ca.issue_leaf(maker, did, factory.public_key(), ekus, (did, did + ".local"), na,
                          nb + ca.BACKDATE)
    short_der = short.public_bytes(Encoding.DER)
    flashimage.write_files(img, "fctry", {"device.crt.der": short_der})

    stop, ready = threading.Event(), threading.Event()
    mon = threading.Thread(target=monitor_mod.run, args=(keydir, (broker.address, broker.port),
                                                         lambda r: None),
                           kwargs={"stop": stop, "ready": ready, "renew": True,
                                   "client_id": "renewer"}, daemon=True)
    mon.start()
    assert ready.wait(10)
    try:
        sim.start(d)
        capture.wait(lambda t, m: t == f"dev/{did}/state" and m["online"], what="online")
        req = capture.wait(lambda t, m: t == f"dev/{did}/events"
                           and m.get("type") == "cert_renew", timeout=30, what="request")[0][1]
        # Asked at 80 % of the lifetime (device time), with the certificate in force.
        assert req["t"] >= nb.timestamp() + 0.8 * LIFETIME_S - 1, req
        assert req["t"] < na.timestamp()
        renewed = capture.wait(lambda t, m: t == f"dev/{did}/events"
                               and m.get("type") == "cert_renewed", timeout=30,
                               what="renewed")[0][1]
        assert renewed["ok"] is True and renewed["not_after"] > na.timestamp()
        cmd = [m for t, m in capture.of(did, "cmd")]
        assert len(cmd) == 1 and cmd[0]["cmd"] == "cert"
        new = x509.load_der_x509_certificate(__import__("base64").b64decode(cmd[0]["cert"]))
        assert new.public_key() == factory.public_key() and new.subject == short.subject
        assert new.not_valid_after_utc.timestamp() == renewed["not_after"]

        # Past the old certificate's expiry: the broker refuses it...
        time.sleep(max(0.0, na.timestamp() + 2 - time.time()))
        key_der = flashimage.read_file(img, "fctry", "device.key.der")
        from cryptography.hazmat.primitives.serialization import (
            NoEncryption,
            PrivateFormat,
            load_der_private_key,
        )
        key_pem = load_der_private_key(key_der, None).private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        (tmp_path / "old.crt").write_bytes(_pem(short_der))
        (tmp_path / "dev.key").write_bytes(key_pem)
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="old-cert")
        c.tls_set(ca_certs=str(keydir / "ca.crt"), certfile=str(tmp_path / "old.crt"),
                  keyfile=str(tmp_path / "dev.key"), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        refused = False
        try:
            c.connect(broker.address, broker.port)
            c.loop_start()
            time.sleep(1)
            refused = not c.is_connected()
        except (ssl.SSLError, OSError):
            refused = True
        finally:
            c.loop_stop()
        assert refused, "the broker took an expired certificate"
        # ... and the device, with the renewed one, comes back after a broker restart.
        mark = time.monotonic()
        broker.stop()
        broker.start()
        capture.wait(lambda t, m: t == f"dev/{did}/state" and m.get("online")
                     and capture_time(capture, t, m) > mark, timeout=30,
                     what="online after the restart")
        status = sim.status(d)
        assert status["version"] == "1.0.0"
        # Restarted, the device keeps the renewed certificate, and its local API presents it.
        sim.reboot(d)
        sim.wait_api(d)
        host, port = sim.https_address(d).split(":")
        ctx = ssl.create_default_context(cafile=str(keydir / "ca.crt"))
        ctx.check_hostname = False  # the test checks which certificate, not the name
        with socket.create_connection((host, int(port)), timeout=10) as raw, \
                ctx.wrap_socket(raw) as tls:
            assert tls.getpeercert(binary_form=True) == new.public_bytes(Encoding.DER)
        capture.wait(lambda t, m: t == f"dev/{did}/state" and m.get("online")
                     and capture_time(capture, t, m) > mark + 1, timeout=30,
                     what="online after the reboot")
    finally:
        stop.set()
        mon.join(10)
        sim.powercut(d)


def capture_time(capture, topic, msg):
    with capture.lock:
        for t, m, _, when in reversed(capture.msgs):
            if t == topic and m is msg:
                return when
    return 0
