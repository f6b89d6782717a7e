"""End to end on simulated devices: boot, update, confirm, roll back, refuse, fall back, alert."""

import json

import pytest

from host_tools import flashimage, sim
from host_tools.cli import main as cli_main
from host_tools.errors import VerifyError

from .conftest import wait_for


def _cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(args)
    return e.value.code, capsys.readouterr().out


def test_start_status_stop(device, capsys):
    st = sim.start(device)
    assert st == {**st, "state": "running", "mode": "normal", "slot": "a", "version": "1.0.0"}
    code, out = _cli(["sim", "status", str(device), "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["state"] == "running" and doc["mode"] == "normal"
    assert doc["slot"] == "a" and doc["version"] == "1.0.0"
    assert sim.stop(device)
    assert sim.status(device)["state"] == "stopped"


def test_update_installs_into_b_and_confirms(device, bundles):
    sim.start(device)
    answer = sim.install(device, bundles["v2"])
    assert answer["slot"] == "b" and answer["version"] == "2.0.0"
    assert sim.status(device)["version"] == "1.0.0"  # still running the old one
    st = sim.reboot(device)
    assert st["slot"] == "b" and st["trial"] is True
    st = wait_for(device, lambda s: s["trial"] is False)
    assert st["slot"] == "b" and st["version"] == "2.0.0"
    assert "confirmed 2.0.0" in st["last"]
    st = sim.reboot(device)  # stays on b after a plain reboot
    assert st["slot"] == "b" and st["trial"] is False


def test_failing_self_test_rolls_back_by_itself(device, bundles):
    sim.start(device)
    sim.install(device, bundles["bad"])
    sim.reboot(device)
    st = wait_for(device, lambda s: s["slot"] == "a" and s["boot"] >= 3)
    assert st["version"] == "1.0.0" and st["trial"] is False
    assert "self-test of 2.1.0 failed: sensor driver missing" in st["last"]
    # the failed release keeps a valid signature but must never be fallen back to
    sim.stop(device)
    assert "2.1.0" not in flashimage.slot_images(sim.image_path(device)).values()
    flashimage.tamper_slot(sim.image_path(device), "1.0.0", "app.mpy")
    st = sim.start(device)
    assert st["mode"] == "alert-only" and any("EMPTY_SLOT" in r for r in st["reasons"])


@pytest.mark.parametrize("name, verdict", [
    ("garbage", "BAD_MAGIC"), ("truncated", "TRUNCATED"), ("esp32", "WRONG_BOARD"),
    ("unknown", "UNKNOWN_ROOT"), ("downgrade", "DOWNGRADE"), ("extra", "EXTRA_BYTES")])
def test_refused_bundles_leave_the_running_version(device, bundles, name, verdict):
    data = {
        "garbage": b"\x00garbage" * 100,
        "truncated": bundles["v2"].read_bytes()[:-100],
        "extra": bundles["v2"].read_bytes() + b"!",
        "esp32": bundles["esp32"].read_bytes(),
        "unknown": bundles["unknown"].read_bytes(),
        "downgrade": bundles["v1"].read_bytes(),
    }[name]
    sim.start(device)
    if name == "downgrade":  # confirm a security release first: the floor rises to 2
        sim.install(device, bundles["v3"])
        sim.reboot(device)
        wait_for(device, lambda s: s["trial"] is False and s["version"] == "3.0.0")
    before = sim.status(device)
    with pytest.raises(VerifyError) as e:
        sim.install(device, data)
    assert e.value.verdict == verdict
    after = sim.status(device)
    assert (after["slot"], after["version"], after["mode"]) == \
        (before["slot"], before["version"], before["mode"])
    st = sim.reboot(device)  # nothing pending: the same version boots, not a trial
    assert (st["slot"], st["version"], st["trial"]) == (before["slot"], before["version"], False)


def test_tampered_slot_falls_back_then_both_bad_is_alert_only(device, bundles):
    sim.start(device)
    sim.install(device, bundles["v2"])
    sim.reboot(device)
    wait_for(device, lambda s: s["trial"] is False and s["slot"] == "b")
    sim.stop(device)
    img = sim.image_path(device)
    flashimage.tamper_slot(img, "2.0.0", "thermostat.mpy")
    st = sim.start(device)
    assert (st["mode"], st["slot"], st["version"]) == ("normal", "a", "1.0.0")
    assert "slot b refused (b: BAD_FILE_HASH" in st["last"]
    sim.stop(device)
    # A module added beside the verified ones (it could shadow one on import): in a ROMFS
    # slot there is no beside, the image is hashed as one, so any change is BAD_FILE_HASH.
    flashimage.tamper_slot(img, "1.0.0", "app.mpy")
    st = sim.start(device)
    assert st["mode"] == "alert-only" and st["slot"] is None
    assert any("BAD_FILE_HASH" in r for r in st["reasons"])
    hw = json.loads((device / "status.json").read_text())
    assert hw["led"]["pattern"] == "alert"
    assert "ALERT-ONLY MODE" in sim.log_tail(device)
    # only a signed recovery bundle gets it out
    with pytest.raises(VerifyError):
        sim.install(device, b"IOTB" + bytes(200))
    sim.install(device, bundles["v3"])
    st = wait_for(device, lambda s: s["mode"] == "normal" and s["trial"] is False)
    assert st["version"] == "3.0.0"


def test_offline_install_and_power_cut(device, bundles):
    answer = sim.install(device, bundles["v2"])  # device is off: same installer, offline
    assert answer["slot"] == "b"
    st = sim.start(device)
    assert st["slot"] == "b" and st["trial"] is True
    wait_for(device, lambda s: s["trial"] is False)
    assert sim.powercut(device)
    assert sim.status(device)["state"] == "stopped"
    st = sim.start(device)
    assert (st["slot"], st["version"], st["trial"]) == ("b", "2.0.0", False)
