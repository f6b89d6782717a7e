"""`iotctl` against simulated devices as a script uses it: distinct exit codes for
unreachable / wrong identity / wrong password, bounded waits, version downgrades refused
unless asked for, and `sim create` that never loses the password."""

import json
import re
import socket
import time

import pytest

from host_tools import flashimage, provision, sim
from host_tools.cli import main as cli_main

PW_RE = re.compile(r"\b[2-9a-z]{4}-[2-9a-z]{4}-[2-9a-z]{4}-[2-9a-z]{4}\b")


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_unreachable_identity_and_password_have_their_own_exit_codes(app_device, keydir,
                                                                      capsys):
    d, dev, info = app_device
    base = ["status", "--device", sim.https_address(d), "--ca", keydir / "ca.crt", "--json"]
    code, out, _ = run([*base, "--name", info["device_id"], "--password", dev.password], capsys)
    assert code == 0 and json.loads(out)["device_id"] == info["device_id"]
    code, out, _ = run([*base, "--name", "th-someoneelse", "--password", dev.password], capsys)
    err = json.loads(out)["error"]
    assert code == 10 and err["name"] == "identity_mismatch" and "th-someoneelse" in err["message"]
    code, out, _ = run([*base, "--name", info["device_id"], "--password", "wrong-pass"], capsys)
    err = json.loads(out)["error"]
    assert code == 11 and err["name"] == "auth_refused" and "login refused (401)" in err["message"]
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    code, out, _ = run(["status", "--device", f"127.0.0.1:{closed}", "--ca", keydir / "ca.crt",
                        "--password", "x", "--json"], capsys)
    assert code == 9 and "connection refused" in json.loads(out)["error"]["message"]


def test_push_timeout_bounds_a_silent_listener(keydir, bundles, capsys):
    """A listener that accepts the TCP connection and never answers: push --timeout 2
    gives up after ~2 s and says what it was waiting for."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        code, out, err = run(["push", bundles["v2"], "--device", f"127.0.0.1:{port}", "--ca",
                              keydir / "ca.crt", "--password", "x", "--timeout", "2"], capsys)
        took = time.monotonic() - started
    assert code == 9, out + err
    assert "within 2 s (waiting for the TLS handshake)" in err
    assert "up to 2 s" in err  # said before waiting
    assert 1.5 < took < 5, took


def test_push_refuses_a_downgrade_unless_allowed(app_device, keydir, bundles, capsys):
    d, dev, info = app_device
    args = ["--device", sim.https_address(d), "--ca", keydir / "ca.crt", "--name",
            info["device_id"], "--password", dev.password, "--json"]
    code, out, _ = run(["push", bundles["v2"], *args], capsys)
    result = json.loads(out)
    assert code == 0 and result["result"] == "confirmed" and result["change"] == "upgrade"
    assert result["from"] == "1.0.0" and result["version"] == "2.0.0"
    # the control loop's longest gap during the upload: measured, never a blank 0
    assert result["control_max_gap_ms"] > 0
    code, out, _ = run(["push", bundles["v1"], *args], capsys)
    err = json.loads(out)["error"]
    assert code == 4 and err["verdict"] == "VERSION_DOWNGRADE" and "--allow-downgrade" in \
        err["message"]
    assert err["from"] == "2.0.0" and err["bundle_version"] == "1.0.0"
    assert dev.status()["version"] == "2.0.0" and dev.status()["update"].get("state") != \
        "receiving"
    code, out, _ = run(["push", bundles["v1"], *args, "--allow-downgrade"], capsys)
    result = json.loads(out)
    assert code == 0 and result["result"] == "confirmed" and result["change"] == "downgrade"
    assert dev.status()["version"] == "1.0.0"
    # a rollback under --json: still one object, with the error and the result
    code, out, _ = run(["push", bundles["bad"], *args], capsys)
    doc = json.loads(out)
    assert code == 7 and doc["error"]["name"] == "rolled_back"
    assert doc["error"]["result"]["result"] == "rolled_back"


def test_sim_create_gives_the_password_once_or_a_label(keydir, bundles, tmp_path, capsys):
    code, out, _ = run(["sim", "create", tmp_path / "a", "--keys", keydir, "--bundle",
                        bundles["v1"]], capsys)
    assert code == 0, out
    pw = [line for line in out.splitlines() if line.startswith("password: ")]
    assert len(pw) == 1 and "shown once" in out
    record = json.loads(flashimage.read_file(sim.image_path(tmp_path / "a"), "fctry",
                                             "password.json"))
    assert provision.check_password(record, pw[0].split()[1])  # it opens this device
    labels = tmp_path / "labels"
    code, out, _ = run(["sim", "create", tmp_path / "b", "--keys", keydir, "--bundle",
                        bundles["v1"], "--labels", labels], capsys)
    assert code == 0 and "password: on the label" in out
    assert "shown once" not in out and not PW_RE.search(out)
    assert len(list(labels.iterdir())) == 2
