"""The owner's pages in a real browser (Debian's Chromium, headless, driven by Playwright) over
the device's TLS server: first-run setup, consent and its withdrawal, "delete my data" (then a
search of the raw flash image for every personal datum the test created) and factory reset.
Chromium trusts the manufacturer CA through its own NSS database, so the certificate is
checked as a phone's browser would check it; no certificate error is ignored. Every step
asserts what the page shows and leaves a screenshot in build/artifacts/screenshots/."""

import json
import os
import re
import subprocess
import time

import pytest

from host_tools import flashimage, mpy, sim
from tests.sealed import open_record
from tests.system import need

from .conftest import wait_for

SHOTS = mpy.REPO / "build" / "artifacts" / "screenshots"
DEVICE = mpy.REPO / "tests" / "device"
CHROMIUM = "/usr/bin/chromium"
JSON = {"Content-Type": "application/json"}

# Personal data this test creates; none of it may survive "delete my data" in the raw image.
NAME = "Zyxwvut Sommerhaus 7"
SCHEDULE = (("06:47", "21.5"), ("22:13", "17"))
NEW_PASSWORD = "Kettle-Harbour-Quince-42"


@pytest.fixture
def browser(tmp_path, keydir, app_device):
    """Chromium for one device: a fresh profile (Playwright makes one) and a fresh HOME whose
    NSS database (~/.pki/nssdb, where Chromium looks) trusts only the manufacturer CA;
    the device id resolves to 127.0.0.1 and nothing else resolves at all."""
    need(CHROMIUM, "chromium")
    need("certutil", "libnss3-tools")
    from playwright import sync_api
    d, _, info = app_device
    home = tmp_path / "home"
    nss = home / ".pki" / "nssdb"
    nss.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nss}", "-N", "--empty-password"], check=True)
    subprocess.run(["certutil", "-d", f"sql:{nss}", "-A", "-t", "C,,", "-n", "manufacturer CA",
                    "-i", str(keydir / "ca.crt")], check=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, env={**os.environ, "HOME": str(home)},
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  # <id>.local: the name on the label, as a phone on the device's set-up
                  # access point resolves it (test_onboarding.py; wifiradio.AP_ADDRESS)
                  f"--host-resolver-rules=MAP {info['device_id']} 127.0.0.1, "
                  f"MAP {info['device_id']}.local 127.0.4.1, MAP * ~NOTFOUND"])
        page = b.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                             has_touch=True, device_scale_factor=1).new_page()
        page.set_default_timeout(15000)
        yield page
        b.close()


class Owner:
    """The owner's side of the test: go to a page, check what it shows, take a screenshot."""

    def __init__(self, page, base):
        self.page = page
        self.base = base
        self.n = 0

    def go(self, path):
        resp = self.page.goto(self.base + path)
        assert resp.ok, (path, resp.status)
        return resp

    def shows(self, shot, *texts, heading=None):
        body = self.page.inner_text("body")
        if heading:
            assert self.page.inner_text("h1") == heading, body[:500]
        for t in texts:
            assert t in body, f"{t!r} not on the page:\n{body[:1500]}"
        self.n += 1
        self.page.screenshot(path=str(SHOTS / f"{self.n:02d}-{shot}.png"), full_page=True)

    def submit(self, label):
        with self.page.expect_navigation():
            self.page.get_by_role("button", name=label).click()

    def login(self, password):
        self.go("/")
        assert self.page.url.endswith("/login")
        self.page.fill("input[name=password]", password)
        self.submit("Log in")


def _image(d):
    return sim.image_path(d).read_bytes()


def _personal(data):
    """The personal data of this test that appear in `data` (raw flash bytes)."""
    needles = [NAME.encode(), b"Sommerhaus", b'"06:47"', b'"22:13"', b"set point 22.5",
               b'"granted": true']
    return [n for n in needles if n in data]


def test_setup_consent_delete_and_reset(app_device, browser):
    d, dev, info = app_device
    owner = Owner(browser, f"https://{info['device_id']}:{sim.https_address(d).rsplit(':')[1]}")
    page = browser

    # Without a session every page leads to the login page, which shows only the model.
    owner.go("/status")
    assert page.url.endswith("/login")
    owner.shows("login", "Thermostat TH-1", "password printed on the label", heading="Log in")
    assert "1.0.0" not in page.content() and info["device_id"] not in page.content()
    owner.login("not-the-password")
    owner.shows("login-refused", "wrong password", heading="Log in")

    # First run: the label password, then the set-up form.
    owner.login(info["password"])
    assert page.url.endswith("/setup")
    owner.shows("setup", "Your own password", "Your data", "nothing is on unless you tick it",
                heading="Set up your thermostat")
    for box in ("history", "telemetry", "diagnostics"):  # explicit opt-in: nothing ticked
        assert not page.is_checked(f"input[name={box}]")
    page.fill("input[name=old]", info["password"])
    page.fill("input[name=new]", "password")
    page.fill("input[name=new2]", "password")
    page.fill("input[name=name]", NAME)
    page.check("input[name=history]")
    page.select_option("select[name=tz]", "60")
    page.fill("input[name=at0]", SCHEDULE[0][0])
    page.fill("input[name=sp0]", SCHEDULE[0][1])
    owner.submit("Finish set-up")
    owner.shows("setup-refused", "that password is too common", heading="Set up your thermostat")
    # shown again as filled in (but the passwords), and nothing stored
    assert page.input_value("input[name=name]") == NAME and page.is_checked("input[name=history]")
    assert page.input_value("input[name=at0]") == SCHEDULE[0][0]
    assert page.input_value("input[name=old]") == ""
    status, doc = dev.call("GET", "/api/privacy")  # a refused form stores nothing
    assert doc["profile"] == {} and not doc["consents"]["history"]["granted"]
    assert dev.call("GET", "/api/thermostat")[1]["settings"]["schedule"] == []

    page.fill("input[name=old]", info["password"])
    page.fill("input[name=new]", NEW_PASSWORD)
    page.fill("input[name=new2]", NEW_PASSWORD)
    page.check("input[name=telemetry]")
    for i, (at, sp) in enumerate(SCHEDULE):
        page.fill(f"input[name=at{i}]", at)
        page.fill(f"input[name=sp{i}]", sp)
    owner.submit("Finish set-up")
    owner.shows("setup-done", "Your new password is active", heading="Set-up complete")
    dev.password, dev.cookie = NEW_PASSWORD, None  # every session ended with the change

    owner.login(info["password"])  # the label password no longer opens it
    assert "wrong password" in page.inner_text("body")
    owner.login(NEW_PASSWORD)
    assert page.url.endswith("/status")
    owner.shows("status", NAME, "History of changes: allowed", "Remote access through the app: "
                "allowed", "Error reports for the maker: off", heading="Status")

    # Heating: a change is saved and lands in the history; an incomplete row is refused.
    owner.go("/thermostat")
    assert page.input_value("input[name=at0]") == "06:47"
    page.fill("input[name=setpoint]", "22.5")
    owner.submit("Save")
    owner.shows("heating-saved", "Saved.", heading="Heating")
    page.fill("input[name=at2]", "12:00")
    owner.submit("Save")
    owner.shows("heating-refused", "schedule row 3 needs both a time and a temperature")
    assert len(dev.call("GET", "/api/thermostat")[1]["settings"]["schedule"]) == 2
    owner.go("/status")
    owner.shows("status-history", "set point 22.5", "(UTC+01:00)")

    # What happens with the data, and the owner's choices.
    owner.go("/privacy")
    owner.shows("privacy", "Heating schedule", "No advertisers", "Removed by",
                "MAKER Example Cloud", heading="Your data")
    owner.go("/consent")
    owner.shows("consent", "Given on", heading="Your choices")
    page.uncheck("input[name=telemetry]")
    owner.submit("Save my choices")
    owner.shows("consent-withdrawn", "Saved. Your choices apply now.", "Withdrawn on")
    consents = dev.call("GET", "/api/privacy")[1]["consents"]
    assert consents["telemetry"]["granted"] is False and consents["telemetry"]["time"]
    assert consents["history"]["granted"] is True and not consents["diagnostics"]["granted"]

    owner.go("/updates")
    owner.shows("updates", "Version 1.0.0", "release 1.0.0", "Security updates until 2031-12-31",
                heading="Updates")
    owner.go("/security")
    owner.shows("security", "security@example.com", "end of life", "security.txt",
                heading="Security")
    page.goto(owner.base + "/.well-known/security.txt")
    txt = page.inner_text("body")
    assert "Contact: mailto:security@example.com" in txt and "Expires: " in txt

    # Delete my data. The data is on the flash, but sealed with the device's key (4.4-1): none
    # of it in plaintext. After the deletion not even the sealed records' bytes are left.
    assert _personal(_image(d)) == []
    sealed = flashimage.read_files(sim.image_path(d), "vfs", root="privacy")
    assert {"privacy/profile.json", "privacy/history.json"} <= set(sealed)
    assert all(b[:3] == b"\xa5S1" for b in sealed.values())  # sealed.MAGIC
    owner.go("/delete")
    owner.shows("delete", "keeps heating", "factory reset", heading="Delete my data")
    page.check("input[name=confirm]")
    owner.submit("Delete my data")
    owner.shows("delete-done", "Deleted from this thermostat:", "deletion requested",
                "Kept:", heading="Your data is deleted")
    assert _personal(_image(d)) == []
    assert not any(b[19:51] in _image(d) for b in sealed.values())  # ciphertext erased too
    files = flashimage.read_files(sim.image_path(d), "vfs", root="privacy")
    assert list(files) == ["privacy/service-delete.json"]
    kept = dev.call("GET", "/api/thermostat")[1]["settings"]
    assert kept["schedule"] == [] and kept["setpoint"] == 22.5 and kept["utc_offset_min"] == 60
    priv = dev.call("GET", "/api/privacy")[1]
    assert priv["profile"] == {} and priv["history"] == [] and priv["service_request"]["id"]
    assert not any(c["granted"] for c in priv["consents"].values())
    owner.go("/status")
    owner.shows("status-after-delete", "Not kept: you have not allowed it", heading="Status")
    assert NAME not in page.inner_text("body")

    # Factory reset: a typed confirmation; afterwards the label password applies again.
    owner.go("/reset")
    owner.shows("reset", "password on the label", "hold the button for 10 seconds",
                heading="Factory reset")
    page.fill("input[name=confirm]", "yes")
    owner.submit("Reset to factory settings")
    owner.shows("reset-refused", "type RESET to confirm")
    boot = sim.read_status(d)["boot"]
    page.fill("input[name=confirm]", "RESET")
    owner.submit("Reset to factory settings")
    owner.shows("reset-done", "password printed on its label", heading="Factory reset done")
    sim.wait_booted(d, after=boot)
    sim.wait_api(d)
    owner.login(NEW_PASSWORD)
    assert "wrong password" in page.inner_text("body")
    owner.login(info["password"])
    assert page.url.endswith("/setup")
    owner.shows("after-reset", "Your own password", heading="Set up your thermostat")
    auth = flashimage.read_files(sim.image_path(d), "vfs", root="auth")
    assert set(auth) <= {"auth/throttle.json"}, auth  # no password record; the login
    secret = flashimage.read_files(sim.image_path(d), "fctry")["secret.bin"]
    assert all(json.loads(open_record(secret, "/data/" + k, v))["c"] == {}  # throttle's hour
               for k, v in auth.items())  # count only, sealed like every owner record
    assert NEW_PASSWORD.encode() not in _image(d)
    st = wait_for(d, lambda s: s["mode"] == "normal")
    assert st["version"] == "1.0.0" and st["slot"] == "a"  # the software stayed


def test_button_held_ten_seconds_resets(app_device):
    """Holding the button for 10 s is a factory reset; a shorter press does nothing."""
    d, dev, info = app_device
    status, _ = dev.call("POST", "/api/password", json.dumps(
        {"old": info["password"], "new": NEW_PASSWORD}).encode(), JSON)
    assert status == 200
    dev.password = NEW_PASSWORD
    assert dev.call("PUT", "/api/thermostat", b'{"setpoint": 24}', JSON)[0] == 200
    button = d / "button"
    button.touch()  # a short press
    time.sleep(2)
    button.unlink()
    time.sleep(0.5)
    assert dev.call("GET", "/api/thermostat")[1]["settings"]["setpoint"] == 24
    boot = sim.read_status(d)["boot"]
    t0 = time.monotonic()
    button.touch()
    sim.wait_booted(d, timeout=30, after=boot)
    held = time.monotonic() - t0
    button.unlink()
    assert 10 <= held < 20, held
    assert re.search(r"factory reset: button held for 10 s", sim.log_tail(d, 60))
    sim.wait_api(d)
    dev.password, dev.cookie = info["password"], None
    assert dev.call("GET", "/api/thermostat")[1]["settings"]["setpoint"] == 20.0


@pytest.mark.parametrize("mode", ["personal", "factory"])
def test_deletion_survives_power_cuts(run_mpy, tmp_path, mode):
    """Delete my data (and the factory-reset wipe) cut at its flash operations in turn: after
    the reboot it finishes, or it had not started; never a half-deleted device."""
    result = run_mpy(DEVICE / "privacy_powercut.py", [tmp_path, mode],
                     extra_path=[mpy.REPO / "firmware"])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("OK ")
