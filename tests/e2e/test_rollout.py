"""A staged rollout that stops itself, end to end: six simulated devices on a real mosquitto
(mutual TLS), the bundles served by Debian's nginx over TLS (certificate from the
manufacturer CA), `iotctl monitor` running as the service in its own process.

A broken release (its self-test always fails) goes out with `--rollout 34`: two of the six
devices take it, both roll back with the self-test's reason, the monitor halts the rollout
by itself, and the other four never download it. `monitor --json` shows every outcome with
its reason; `iotctl rollout advance` is refused on the halted rollout. And with a device
waiting for its spread delay: `rollout pause` calls its start off, `advance` offers the
release again, `abort` ends it, and nothing is downloaded.
"""

import json
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from host_tools import sim
from host_tools.cli.cloud import publish_cmd
from host_tools.cli.rollout import rollout_group
from host_tools.cloud import rollout
from tests.nginx import Nginx

from .test_cloud import broker, capture, new_device  # noqa: F401 (fixtures)

FLEET = 6


@pytest.fixture
def web(tmp_path, keydir):
    root = tmp_path / "updates"
    root.mkdir()
    with Nginx(tmp_path / "nginx", keydir, root) as w:
        yield w


def iotctl(*args):
    return [sys.executable, "-c", "from host_tools.cli import main; main()", *map(str, args)]


def test_rollout_halts_itself_after_two_rollbacks(tmp_path, keydir, bundles, broker, capture,
                                                  web):
    addr = f"{broker.address}:{broker.port}"
    db = tmp_path / "rollouts.sqlite"
    made = []
    mon = subprocess.Popen(iotctl("monitor", "--broker", addr, "--keys", keydir, "--db", db,
                                  "--json", "--client-id", "rollout-monitor"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ids = []
        for i in range(FLEET):
            d = tmp_path / f"dev{i}"
            made.append(d)
            info, _ = new_device(d, keydir, bundles["v1"], broker)
            ids.append(info["device_id"])
        # The service knows the fleet from the devices' retained state.
        deadline = time.monotonic() + 60
        while True:
            with rollout.Store.open(db) as s:
                if sorted(s.fleet("stable")) == sorted(ids):
                    break
            assert time.monotonic() < deadline and mon.poll() is None, mon.stderr.read()
            time.sleep(0.2)

        res = CliRunner().invoke(publish_cmd, [
            str(bundles["bad"]), "--channel", "stable", "--server", web.url(),
            "--broker", addr, "--keys", str(keydir), "--dir", str(web.root), "--spread", "0",
            "--rollout", "34", "--halt-failures", "50", "--halt-after", "2", "--db", str(db),
            "--json"])
        assert res.exit_code == 0, res.output + repr(res.exception)
        pub = json.loads(res.output)
        rid = pub["rollout"]["rollout"]
        assert (pub["rollout"]["fleet"], pub["rollout"]["admitted"]) == (FLEET, 2)
        below = pub["announcement"]["rollout"]["below"]
        cohort = [d for d in ids if rollout.device_hash(rid, d) < below]
        others = [d for d in ids if d not in cohort]
        assert len(cohort) == 2

        deadline = time.monotonic() + 120
        while True:
            with rollout.Store.open(db) as s:
                st = s.status(rid)
            if st["state"] == "halted":
                break
            assert time.monotonic() < deadline, (st, mon.poll())
            time.sleep(0.5)
        assert st["counts"] == {"rolled_back": 2} and st["tried"] == 2, st
        assert "2 of 2 devices that tried failed" in st["reason"]
        for d in cohort:
            assert st["devices"][d]["detail"] == \
                "self-test of 2.1.0 failed: sensor driver missing"
        # The halted announcement (retained) admits nobody.
        fleet_msgs = capture.wait(lambda t, m: t == "fleet/iot-thermostat/stable"
                                  and m.get("rollout", {}).get("below") == 0,
                                  what="halted announcement")
        assert fleet_msgs[-1][1]["version"] == "2.1.0"
        # Each cohort device: offered, downloading, installed, then (after its restart) rolled
        # back, and back on 1.0.0; it never installs the release again.
        for d in ids:
            updates = [m for t, m in capture.of(d, "events") if m.get("type") == "update"]
            if d in others:
                assert updates == [], updates  # never offered, never downloaded
                continue
            states = [m["state"] for m in updates]
            assert states[0] == "offered" and states[-1] == "rolled_back", states
            assert "installed" in states and states.count("installed") == 1
            assert updates[-1]["running"] == "1.0.0" and updates[-1]["rollout"] == rid
        for d in made:
            assert sim.status(d)["version"] == "1.0.0"
        got = [r for r in web.requests() if r["path"].endswith(".bin")]
        assert len(got) == 2 and all(r["status"] == 206 and r["range"] == "bytes=0-"
                                     for r in got), got

        # The operator cannot push a halted rollout further.
        res = CliRunner().invoke(rollout_group, ["advance", rid, "--to", "100", "--keys",
                                                 str(keydir), "--db", str(db), "--broker", addr])
        assert isinstance(res.exception, rollout.RolloutError) and "halted" in str(res.exception)
        time.sleep(2)
        assert len([r for r in web.requests() if r["path"].endswith(".bin")]) == 2
    finally:
        if mon.poll() is None:
            mon.send_signal(signal.SIGINT)  # the monitor prints its summary and quits
        try:
            out, err = mon.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # never leave it running: stop it by its PID
            mon.kill()
            out, err = mon.communicate()
        for d in made:
            sim.powercut(d)

    # `monitor --json`: one record per message, then the summary with every outcome.
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    halts = [r for r in lines if "rollout" in r and r.get("kind") == "events"]
    assert len(halts) == 1 and halts[0]["rollout"]["state"] == "halted"
    summary = lines[-1]
    assert summary["kind"] == "summary", err
    rel = summary["releases"]["2.1.0"]
    assert rel["counts"] == {"rolled_back": 2}
    assert {d: o["reason"] for d, o in rel["devices"].items()} == \
        {d: "self-test of 2.1.0 failed: sensor driver missing" for d in cohort}
    assert [r["state"] for r in summary["rollouts"]] == ["halted"]


def test_pause_calls_off_a_scheduled_start_and_advance_resumes(tmp_path, keydir, bundles,
                                                               broker, capture, web):
    """A device waiting for its spread delay: `rollout pause` calls its start off, `advance`
    offers the release again, `abort` ends it; nothing is downloaded meanwhile."""
    from .test_cloud import call

    addr = f"{broker.address}:{broker.port}"
    db = str(tmp_path / "rollouts.sqlite")
    d = tmp_path / "dev"
    try:
        info, dev = new_device(d, keydir, bundles["v1"], broker)
        did = info["device_id"]
        capture.wait(lambda t, m: t == f"dev/{did}/state" and m["online"], what="online")

        def pull_state(want):
            deadline = time.monotonic() + 20
            while True:
                st = call(dev, "GET", "/api/cloud")[1]["pull"]
                if st["state"] == want:
                    return st
                assert time.monotonic() < deadline, st
                time.sleep(0.2)

        res = CliRunner().invoke(publish_cmd, [
            str(bundles["v2"]), "--channel", "stable", "--server", web.url(), "--broker", addr,
            "--keys", str(keydir), "--dir", str(web.root), "--spread", "600", "--rollout",
            "100", "--db", db, "--json"])
        assert res.exit_code == 0, res.output + repr(res.exception)
        rid = json.loads(res.output)["rollout"]["rollout"]
        assert pull_state("scheduled")["version"] == "2.0.0"
        opts = ["--keys", str(keydir), "--db", db, "--broker", addr, "--json"]
        res = CliRunner().invoke(rollout_group, ["pause", rid, *opts])
        assert res.exit_code == 0 and json.loads(res.output)["state"] == "paused", res.output
        pull_state("idle")  # the scheduled start is called off
        res = CliRunner().invoke(rollout_group, ["advance", rid, "--to", "100", *opts])
        assert res.exit_code == 0 and json.loads(res.output)["state"] == "active", res.output
        pull_state("scheduled")
        res = CliRunner().invoke(rollout_group, ["abort", rid, *opts])
        assert res.exit_code == 0 and json.loads(res.output)["state"] == "aborted", res.output
        pull_state("idle")
        offered = [m for t, m in capture.of(did, "events") if m.get("state") == "offered"]
        assert len(offered) == 2 and all(m["rollout"] == rid for m in offered)
        assert [r for r in web.requests() if r["path"].endswith(".bin")] == []
        assert sim.status(d)["version"] == "1.0.0"
    finally:
        sim.powercut(d)
