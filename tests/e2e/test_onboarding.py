"""Owner onboarding over Wi-Fi (ETSI 4.12-1) on a simulated device with a radio
(boards/unix/wifiradio.py, host_tools/sim/air.py): a new device opens a WPA2 set-up access point
named after its id with the passphrase on its label; a phone joins it by the label's Wi-Fi QR
code; the set-up page (TLS, device certificate) tries the home network, reports the result and
only then closes the AP. The window and the button reopen it; nothing else does; a wrong
passphrase and a second client are refused; only the set-up page listens on the AP."""

import re
import socket
import ssl
import time
import urllib.parse

import pytest

from host_tools import label, onboarding, push, sim
from host_tools.errors import DeviceError
from host_tools.sim import air as simair

from .test_pages import Owner, browser  # noqa: F401  (the Chromium fixture, reused)

AP_HOST = "127.0.4.1"  # boards/unix/wifiradio.py AP_ADDRESS
HOME, HOME_KEY = "Haus Nordlicht 5G", "Birke-Wolke-Kanal-93"


def _free_ap_port():
    with socket.socket() as s:
        s.bind((AP_HOST, 0))
        return s.getsockname()[1]


def _radio_device(tmp_path, keydir, bundles, window_s=600):
    d = tmp_path / "dev"
    info = sim.create(d, keydir, bundles["v1"], iterations=1000, labels=tmp_path / "labels")
    simair.enable(d, window_s=window_s, setup_port=_free_ap_port())
    simair.set_networks(d, {HOME: HOME_KEY, "Nachbar": "neighbours-password"})
    return d, info


def wait(pred, what, timeout=20.0, d=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n" + (sim.log_tail(d, 40) if d else ""))


def _logged(d, line):
    """Wait for `line` in the device log (it reaches the file a little after the act)."""
    wait(lambda: line in sim.log_tail(d, 60), repr(line), d=d)


def _listens(port, host=AP_HOST):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def app_device(tmp_path, keydir, bundles):
    """A new device with a radio and no Wi-Fi settings, running: its set-up AP is open."""
    d, info = _radio_device(tmp_path, keydir, bundles)
    sim.start(d)
    sim.wait_api(d)
    wait(lambda: simair.access_point(d), "the set-up access point", d=d)
    client = push.Device(sim.https_address(d), info["password"], ca=keydir / "ca.crt",
                         name=info["device_id"])
    yield d, client, info
    sim.powercut(d)


def _label_wifi(info):
    """What a phone reads from the label's Wi-Fi QR code."""
    text = label.wifi_qr_text(info)
    assert text == onboarding.wifi_qr(f"setup-{info['device_id']}", info["ap_passphrase"])
    return onboarding.parse_wifi_qr(text)


def test_browser_joins_the_setup_ap_and_sets_the_home_network(app_device, browser):  # noqa: F811
    d, dev, info = app_device
    port = sim.sim_config(d)["setup_port"]
    ap = simair.access_point(d)
    qr = _label_wifi(info)
    assert qr["T"] == "WPA" and ap == {"ssid": qr["S"], "security": "WPA2-PSK",
                                       "address": AP_HOST, "clients": 0}
    # A wrong passphrase is refused; the label's is accepted; a second phone is refused.
    with pytest.raises(DeviceError, match="wrong passphrase"):
        simair.join(d, qr["S"], qr["P"][:-1] + ("x" if qr["P"][-1] != "x" else "y"))
    assert simair.join(d, qr["S"], qr["P"], mac="02:00:00:00:00:01") == AP_HOST
    with pytest.raises(DeviceError, match="access point full"):
        simair.join(d, qr["S"], qr["P"], mac="02:00:00:00:00:02")

    owner = Owner(browser, f"https://{info['device_id']}.local:{port}")
    page = browser
    owner.go("/setup")
    owner.shows("wifi-setup", "Your Wi-Fi network", heading="Connect your thermostat to Wi-Fi")
    page.fill("input[name=ssid]", HOME)
    page.fill("input[name=password]", "not-the-password")
    owner.submit("Connect")
    owner.shows("wifi-refused", f"Not connected to {HOME}: the password is wrong")
    assert simair.access_point(d) is not None  # still open, nothing stored
    page.fill("input[name=ssid]", "Nowhere")
    page.fill("input[name=password]", HOME_KEY)
    owner.submit("Connect")
    owner.shows("wifi-not-found", "no network with that name is in range")
    page.fill("input[name=ssid]", HOME)
    page.fill("input[name=password]", HOME_KEY)
    owner.submit("Connect")
    owner.shows("wifi-connected", f"Connected to {HOME}", "closes now",
                f"https://{info['device_id']}.local/")
    wait(lambda: simair.access_point(d) is None, "the AP to close", d=d)
    wait(lambda: not _listens(port), "the set-up page to stop listening", d=d)
    st = simair.station(d)
    assert st["ssid"] == HOME and st["status"] == 1010, st  # STAT_GOT_IP
    _logged(d, "setup: access point closed (home network set)")
    # The settings persist (sealed) across a restart: the station reconnects, no AP opens.
    sim.powercut(d)
    sim.start(d)
    sim.wait_api(d)
    wait(lambda: re.search(f"wifi: connected to {HOME}", sim.log_tail(d, 20)), "reconnect", d=d)
    time.sleep(1)
    assert simair.access_point(d) is None
    raw = sim.image_path(d).read_bytes()
    assert HOME_KEY.encode() not in raw and HOME.encode() not in raw


def test_window_button_and_no_fallback_ap(tmp_path, keydir, bundles):
    d, info = _radio_device(tmp_path, keydir, bundles, window_s=3)
    port = sim.sim_config(d)["setup_port"]
    sim.start(d)
    try:
        t0 = time.monotonic()
        wait(lambda: simair.access_point(d), "the set-up access point", d=d)
        assert _listens(port)
        wait(lambda: simair.access_point(d) is None, "the window to end", timeout=15, d=d)
        assert 2.5 <= time.monotonic() - t0 < 20
        wait(lambda: not _listens(port), "the set-up page to stop listening", d=d)
        _logged(d, "setup: access point closed (set-up window ended)")
        with pytest.raises(DeviceError, match="in range"):
            simair.join(d, f"setup-{info['device_id']}", info["ap_passphrase"])
        # A short press does nothing; a 3 s press opens the window again.
        button = d / "button"
        button.touch()
        time.sleep(1.5)
        button.unlink()
        time.sleep(0.6)
        assert simair.access_point(d) is None
        button.touch()
        wait(lambda: simair.access_point(d), "the AP after a 3 s press", timeout=8, d=d)
        button.unlink()
        _logged(d, "setup: access point setup-%s open for 3 s (button held 3 s)"
                % info["device_id"])
        simair.join(d, f"setup-{info['device_id']}", info["ap_passphrase"])
        _configure(d, info, keydir, port)
        wait(lambda: simair.access_point(d) is None, "the AP to close", d=d)
        # The home network drops: the device keeps heating and serving locally, retries, and
        # opens no access point.
        simair.set_networks(d, {"Nachbar": "neighbours-password"})
        wait(lambda: "wifi: no connection to" in sim.log_tail(d, 10), "a retry", timeout=15, d=d)
        dev = push.Device(sim.https_address(d), info["password"], ca=keydir / "ca.crt",
                          name=info["device_id"])
        assert dev.call("GET", "/api/health")[0] == 200
        time.sleep(4)  # longer than the window: still no AP
        assert simair.access_point(d) is None
        simair.set_networks(d, {HOME: HOME_KEY})
        wait(lambda: simair.station(d)["status"] == 1010, "the reconnection", timeout=20, d=d)
        assert simair.access_point(d) is None
        # A factory reset forgets the network: the device opens its set-up AP again.
        boot = sim.read_status(d)["boot"]
        assert dev.call("POST", "/api/reset", b'{"confirm": "RESET"}',
                        {"Content-Type": "application/json"})[0] == 200
        sim.wait_booted(d, after=boot)
        wait(lambda: simair.access_point(d), "the AP after a factory reset", d=d)  # power-on
        assert simair.station(d)["ssid"] is None  # cleared it: nothing to connect to
    finally:
        sim.powercut(d)


def _configure(d, info, keydir, port, ssid=HOME, key=HOME_KEY):
    """What the browser does, over plain HTTPS: GET the form (its token), POST the network."""
    ctx = ssl.create_default_context(cafile=str(keydir / "ca.crt"))
    name = info["device_id"] + ".local"

    def call(method, body=b""):
        s = socket.create_connection((AP_HOST, port), timeout=30)
        with ctx.wrap_socket(s, server_hostname=name) as t:
            head = f"{method} /setup HTTP/1.1\r\nHost: {name}\r\nContent-Length: {len(body)}\r\n"
            if body:
                head += "Content-Type: application/x-www-form-urlencoded\r\n"
            t.sendall(head.encode() + b"\r\n" + body)
            out = b""
            while chunk := t.recv(8192):
                out += chunk
        return int(out[9:12]), out.decode()
    status, text = call("GET")
    token = re.search(r'name="token" value="([0-9a-f]+)"', text).group(1)
    form = urllib.parse.urlencode({"token": token, "ssid": ssid, "password": key}).encode()
    return call("POST", form)
