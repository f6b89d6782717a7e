"""The application end to end: local TLS API, login, settings, pushed updates that never stop
the thermostat, rollbacks, and every kind of bad upload."""

import json
import socket
import ssl
import time

import pytest

from host_tools import push, sim
from host_tools.cli import main as cli_main
from host_tools.errors import DeviceError, VerifyError

JSON = {"Content-Type": "application/json"}


def _raw_tls(d, info, keydir):
    ctx = ssl.create_default_context(cafile=str(keydir / "ca.crt"))
    host, port = push.parse_device(sim.https_address(d))
    s = socket.create_connection((host, port), timeout=20)
    return ctx.wrap_socket(s, server_hostname=info["device_id"])


def _read_all(s):
    out = b""
    while True:
        try:
            chunk = s.recv(4096)
        except (ssl.SSLError, OSError):
            break
        if not chunk:
            break
        out += chunk
    return out


def test_push_update_while_thermostat_runs(app_device, bundles):
    d, dev, info = app_device
    status, _ = dev.call("PUT", "/api/thermostat", json.dumps({"setpoint": 23.5}).encode(), JSON)
    assert status == 200
    before = dev.status()
    assert before["version"] == "1.0.0" and before["thermostat"]["settings"]["setpoint"] == 23.5
    seen = []
    result = push.push(dev, bundles["v3"], progress=seen.append)
    assert result["result"] == "confirmed" and result["version"] == "3.0.0"
    assert result["notes"] == "release 3.0.0" and result["security_fix"] is True
    assert seen[-1] == bundles["v3"].stat().st_size and len(seen) > 1
    after = dev.status()
    assert after["slot"] == "b" and after["slots"]["security_floor"] == 2
    assert after["thermostat"]["settings"]["setpoint"] == 23.5  # the owner's settings survive
    status, doc = dev.call("GET", "/api/update")
    assert doc["installed"]["notes"] == "release 3.0.0" and doc["installed"]["security_fix"]


def test_failing_self_test_rolls_back_and_says_why(app_device, bundles):
    d, dev, _ = app_device
    result = push.push(dev, bundles["bad"])
    assert result["result"] == "rolled_back" and result["version"] == "1.0.0"
    assert "self-test of 2.1.0 failed: sensor driver missing" in result["reason"]
    assert dev.status()["slot"] == "a"


@pytest.mark.parametrize("name, verdict", [
    ("garbage", "BAD_MAGIC"), ("esp32", "WRONG_BOARD"), ("unknown", "UNKNOWN_ROOT"),
    ("downgrade", "DOWNGRADE"), ("extra", "EXTRA_BYTES")])
def test_refused_uploads_keep_the_running_version(app_device, bundles, tmp_path, name, verdict):
    d, dev, _ = app_device
    if name == "downgrade":
        assert push.push(dev, bundles["v3"])["result"] == "confirmed"
    path = tmp_path / "upload.bin"
    path.write_bytes({"garbage": b"\x7fELF" + bytes(5000),
                      "esp32": bundles["esp32"].read_bytes(),
                      "unknown": bundles["unknown"].read_bytes(),
                      "downgrade": bundles["v1"].read_bytes(),
                      "extra": bundles["v2"].read_bytes() + b"!"}[name])
    before = dev.status()
    with pytest.raises(VerifyError) as e:  # allow_downgrade: the device's own rule decides
        push.push(dev, path, allow_downgrade=True)
    assert e.value.verdict == verdict, e.value
    time.sleep(0.6)  # a few control ticks
    after = dev.status()
    assert after["version"] == before["version"] and after["update"]["verdict"] == verdict
    assert after["slots"]["pending"] is None
    assert after["thermostat"]["ticks"] > before["thermostat"]["ticks"]


def test_truncated_and_stalled_uploads(app_device, bundles, keydir):
    d, dev, info = app_device
    dev.login()
    data = bundles["v2"].read_bytes()
    head = ("POST /api/update HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(data)}\r\nCookie: {dev.cookie}\r\nX-CSRF-Token: {dev.csrf}"
            "\r\n\r\n").encode()
    # truncated: the client hangs up half way
    s = _raw_tls(d, info, keydir)
    s.sendall(head + data[:len(data) // 2])
    s.close()
    deadline = time.monotonic() + 10
    while dev.status()["update"].get("state") == "receiving" and time.monotonic() < deadline:
        time.sleep(0.1)
    after = dev.status()
    assert after["update"]["verdict"] == "TRUNCATED" and after["version"] == "1.0.0"
    # stalled: the client stops sending; the device keeps serving and drops it after 10 s
    s = _raw_tls(d, info, keydir)
    s.sendall(head + data[:3000])
    t0 = time.monotonic()
    ticks = dev.status()["thermostat"]["ticks"]
    time.sleep(1.0)
    assert dev.status()["thermostat"]["ticks"] > ticks  # control and API still answer
    answer = _read_all(s)
    assert b" 408 " in answer.split(b"\r\n")[0] and time.monotonic() - t0 < 15
    s.close()
    st = dev.status()
    assert st["update"]["verdict"] == "TRUNCATED" and st["slots"]["pending"] is None
    assert push.push(dev, bundles["v2"])["result"] == "confirmed"  # and it still updates


def test_login_throttling_and_session_rules(app_device, keydir):
    d, dev, info = app_device
    bad = push.Device(sim.https_address(d), "wrong-password", ca=keydir / "ca.crt",
                      name=info["device_id"])
    codes = []
    for _ in range(3):
        status, doc, resp = bad._request("POST", "/api/login",
                                         json.dumps({"password": "wrong"}).encode(), JSON)
        codes.append((status, resp.getheader("Retry-After")))
    assert codes[0][0] == 401 and codes[1][0] == 401
    assert codes[2] == (429, "1")
    time.sleep(2.1)
    status, doc, resp = dev._request("POST", "/api/login",
                                     json.dumps({"password": dev.password}).encode(), JSON)
    assert status == 200
    cookie = resp.getheader("Set-Cookie")
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Max-Age=1800"):
        assert flag in cookie
    dev.cookie, dev.csrf = cookie.split(";")[0], doc["csrf"]
    # state-changing calls need the CSRF token
    token, dev.csrf = dev.csrf, None
    status, doc = dev.call("PUT", "/api/thermostat", b'{"setpoint": 21}', JSON)
    assert status == 403 and "CSRF" in doc["message"]
    dev.csrf = token
    assert dev.call("PUT", "/api/thermostat", b'{"setpoint": 21}', JSON)[0] == 200
    # unauthenticated: nothing beyond the model
    anon = push.Device(sim.https_address(d), "", ca=keydir / "ca.crt", name=info["device_id"])
    status, doc, _ = anon._request("GET", "/api/status")
    assert status == 401 and "1.0.0" not in json.dumps(doc)
    status, doc, _ = anon._request("GET", "/api/health")
    assert status == 200 and doc == {"ok": True, "model": "TH-1"}


def test_bad_settings_are_refused_and_change_nothing(app_device):
    d, dev, _ = app_device
    before = dev.call("GET", "/api/thermostat")[1]["settings"]
    for body, code in ((b'{"setpoint": 99}', 422), (b'{"setpoint": "hot"}', 422),
                       (b'{"mode": "cool"}', 422), (b'{"schedule": [{"at": "25:00", '
                                                      b'"setpoint": 20}]}', 422),
                       (b'{"setpoint": 21, "bogus": 1}', 422), (b"[1,2]", 422),
                       (b"{not json", 400), (b"{}", 422)):
        status, doc = dev.call("PUT", "/api/thermostat", body, JSON)
        assert status == code, (body, doc)
        assert doc["message"]
    assert dev.call("GET", "/api/thermostat")[1]["settings"] == before


def test_untrusted_device_certificate_is_refused(app_device, tmp_path):
    from host_tools import ca as camod
    d, _, info = app_device
    camod.init(tmp_path / "other-ca")
    stranger = push.Device(sim.https_address(d), "x", ca=tmp_path / "other-ca" / "ca.crt",
                           name=info["device_id"])
    with pytest.raises(DeviceError, match="not trusted"):
        stranger.status()


def test_push_and_status_cli(app_device, bundles, keydir, capsys, monkeypatch):
    d, dev, info = app_device
    monkeypatch.setenv("IOTCTL_PASSWORD", dev.password)
    args = ["--device", sim.https_address(d), "--ca", str(keydir / "ca.crt"), "--name",
            info["device_id"]]
    with pytest.raises(SystemExit) as e:
        cli_main(["push", str(bundles["v2"]), *args, "--json"])
    assert e.value.code == 0
    assert json.loads(capsys.readouterr().out)["result"] == "confirmed"
    with pytest.raises(SystemExit) as e:
        cli_main(["status", *args])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "version 2.0.0 in slot b" in out
    with pytest.raises(SystemExit) as e:
        cli_main(["push", str(bundles["bad"]), *args, "--json"])
    assert e.value.code == 7  # rolled back


def test_pinned_device_certificate(app_device, tmp_path):
    """Without the manufacturer CA, the owner can pin the device's own certificate: that
    certificate and nothing else is trusted, and its name is taken from it."""
    from host_tools import flashimage
    d, dev, info = app_device
    pin = tmp_path / "device.der"
    pin.write_bytes(flashimage.read_file(sim.image_path(d), "fctry", "device.crt.der"))
    pinned = push.Device(sim.https_address(d), dev.password, pin=pin)
    assert pinned.name == info["device_id"]
    assert pinned.status()["device_id"] == info["device_id"]
    other = tmp_path / "other"
    other.mkdir()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from host_tools import ca as camod
    camod.init(other)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = camod.issue_device(camod.load(other), info["device_id"], key.public_key())
    (tmp_path / "wrong.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    with pytest.raises(DeviceError, match="not trusted"):
        push.Device(sim.https_address(d), dev.password, pin=tmp_path / "wrong.der").status()
