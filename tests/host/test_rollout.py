"""Staged rollouts, the service's side (host_tools/cloud/rollout.py) and the device's cohort rule
(firmware/pullstate.py), without a broker: the end-to-end run with six simulated devices is
tests/e2e/test_rollout.py."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from host_tools import mpy
from host_tools.cli.rollout import COMMANDS, rollout_group
from host_tools.cloud import rollout
from host_tools.cloud.monitor import Monitor
from host_tools.errors import UsageError
from tests.host.conftest import new_database

REPO = Path(__file__).resolve().parents[2]
ANN = {"url": "https://u.example/p-2.1.0.bin", "sha256": "ab" * 32, "size": 4096,
       "version": "2.1.0", "spread_s": 0, "security_fix": False}


def devices(n, prefix="sim"):
    return [f"{prefix}-{i:04d}" for i in range(n)]


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    """A fresh rollout store: a SQLite file, or a new database on the throw-away PostgreSQL
    server of tests/host/conftest.py."""
    return new_database(request, tmp_path, "rollouts")


@pytest.fixture
def store(where):
    with rollout.Store.open(where) as s:
        yield s


def test_device_and_service_agree_on_the_cohort(tmp_path):
    cases = []
    for i, d in enumerate(devices(60)):
        below = (i * 2654435761) % (1 << 32)
        cases.append({"rollout": {"id": "p-2.1.0-abababab", "below": below}, "device": d})
    cases += [{"rollout": {"id": "x", "below": 0}, "device": "a"},
              {"rollout": {"id": "x", "below": 1 << 32}, "device": "a"}]
    bad = [{"id": "", "below": 1}, {"id": "a b", "below": 1}, {"id": "x" * 41, "below": 1},
           {"id": "x", "below": -1}, {"id": "x", "below": (1 << 32) + 1},
           {"id": "x", "below": True}, {"id": "x"}, {"id": "x", "below": 1, "more": 1}, [1]]
    cases += [{"rollout": b, "device": "a"} for b in bad]
    f = tmp_path / "cases.jsonl"
    f.write_text("".join(json.dumps(c) + "\n" for c in cases))
    proc = mpy.run(REPO / "tests" / "device" / "rollout_cohort.py", [str(f)],
                   extra_path=[REPO / "firmware"])
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(x) for x in proc.stdout.splitlines()]
    good = len(cases) - len(bad)
    for c, g in zip(cases[:good], got[:good]):
        r = c["rollout"]
        assert g == (rollout.device_hash(r["id"], c["device"]) < r["below"]), c
    assert 0 < sum(got[:60]) < 60 and got[60:62] == [False, True]
    assert all(isinstance(g, str) and g.startswith("ValueError: ") for g in got[good:]), got


def test_the_bound_admits_exactly_p_percent_and_only_grows():
    fleet = devices(6)
    admitted = []
    for p in (1, 16, 17, 34, 50, 67, 99, 100):
        b = rollout.bound("r1", p, fleet)
        ins = {d for d in fleet if rollout.device_hash("r1", d) < b}
        assert len(ins) == p * 6 // 100, p
        assert all(a <= ins for a in admitted)  # in stays in as P grows
        admitted.append(ins)
    assert rollout.bound("r1", 0, []) == 0 and rollout.bound("r1", 50, []) == 1 << 31
    # Devices that appear later never push out one that is in: the bound never decreases.
    b34 = rollout.bound("r1", 34, fleet)
    assert rollout.bound("r1", 34, fleet + devices(40), b34) >= b34
    with pytest.raises(UsageError):
        rollout.bound("r1", 101, fleet)


def feed_fleet(store, n, channel="stable"):
    for d in devices(n, "sim" if channel == "stable" else channel):
        store.seen(d, {"online": True, "version": "1.0.0", "channel": channel}, now=1000)


def test_halts_when_failures_reach_the_threshold_after_the_minimum(store):
    feed_fleet(store, 6)
    feed_fleet(store, 3, channel="beta")  # another channel: not counted
    r = store.create(ANN, "p", "stable", 34, halt_failures=50, halt_after=2, now=1000)
    st = store.status(r["rollout_id"])
    assert (st["fleet"], st["admitted"], st["state"]) == (6, 2, "active")
    ann = store.announcement(r)
    assert ann["rollout"] == {"id": r["rollout_id"], "below": r["below"]}
    cohort = [d for d in devices(6) if rollout.device_hash(r["rollout_id"], d) < r["below"]]
    rid = r["rollout_id"]
    ev = {"type": "update", "rollout": rid, "version": "2.1.0"}
    assert store.outcome(cohort[0], {**ev, "state": "downloading", "progress": 50}) is None
    assert store.outcome(cohort[0], {**ev, "state": "rolled_back",
                                     "reason": "self-test of 2.1.0 failed: x"}) is None
    assert store.outcome("other", {**ev, "rollout": "unknown", "state": "rolled_back"}) is None
    assert store.outcome(cohort[1], {**ev, "state": "bogus"}) is None  # not an outcome
    halted = store.outcome(cohort[1], {**ev, "state": "refused", "verdict": "BAD_SIGNATURE"})
    assert halted["state"] == "halted" and "2 of 2 devices" in halted["reason"]
    assert store.announcement(halted)["rollout"]["below"] == 0  # nobody else starts it
    st = store.status(rid)
    assert st["counts"] == {"rolled_back": 1, "refused": 1} and st["failures"] == 2
    assert st["devices"][cohort[0]]["detail"] == "self-test of 2.1.0 failed: x"
    with pytest.raises(rollout.RolloutError, match="halted"):
        store.advance(rid, 100)
    assert store.get(rid)["percent"] == 34  # refused: nothing changed


def test_successes_keep_it_going_and_operator_controls(store):
    feed_fleet(store, 10)
    r = store.create(ANN, "p", "stable", 20, halt_failures=50, halt_after=2, now=1000)
    rid = r["rollout_id"]
    ev = {"type": "update", "rollout": rid, "version": "2.1.0"}
    for d in devices(10)[:3]:
        assert store.outcome(d, {**ev, "state": "confirmed"}) is None
    assert store.outcome(devices(10)[3], {**ev, "state": "rolled_back"}) is None  # 1 < min
    assert store.outcome(devices(10)[4], {**ev, "state": "rolled_back"}) is None  # 2 of 5 < 50%
    with pytest.raises(rollout.RolloutError, match="exists"):
        store.create(ANN, "p", "stable", 50)
    with pytest.raises(rollout.RolloutError, match="never shrinks"):
        store.advance(rid, 10)
    for bad in (0, 101, True, "50"):
        with pytest.raises(UsageError):
            store.advance(rid, bad)
    assert store.get(rid)["percent"] == 20
    a = store.advance(rid, 60)
    assert store.status(rid)["admitted"] == 6 and a["below"] >= r["below"]
    p = store.pause(rid)
    assert p["state"] == "paused" and store.announcement(p)["rollout"]["below"] == 0
    with pytest.raises(rollout.RolloutError, match="not active"):
        store.pause(rid)
    assert store.outcome(devices(10)[5], {**ev, "state": "rolled_back"}) is None  # not active
    assert store.advance(rid, 60)["state"] == "active"  # resumed
    assert store.abort(rid)["state"] == "aborted"
    with pytest.raises(rollout.RolloutError):
        store.advance(rid, 100)
    with pytest.raises(rollout.RolloutError, match="no rollout"):
        store.pause("nope")
    for bad in ((0, 50, 2), (101, 50, 2), (30, 0, 2), (30, 50, 0)):
        with pytest.raises(UsageError):
            store.create({**ANN, "sha256": "cd" * 32}, "p", "stable", *bad)
    assert [x["rollout_id"] for x in store.all()] == [rid]


def test_monitor_aggregates_outcomes_per_release_and_halts(store):
    mon = Monitor(store)
    for d in devices(6):
        mon.feed(f"dev/{d}/state", json.dumps({"online": True, "version": "1.0.0",
                                               "channel": "stable"}), 1000)
    r = store.create(ANN, "p", "stable", 34, halt_failures=50, halt_after=2)
    rid = r["rollout_id"]
    cohort = [d for d in devices(6) if rollout.device_hash(rid, d) < r["below"]]
    seq = 0
    for d in cohort:
        for state, more in (("offered", {}), ("downloading", {"progress": 0}),
                            ("installed", {}), ("rolled_back",
                                                {"reason": "self-test of 2.1.0 failed: x"})):
            seq += 1
            rec = mon.feed(f"dev/{d}/events", json.dumps(
                {"type": "update", "state": state, "version": "2.1.0", "rollout": rid,
                 "seq": seq, **more}), 1000 + seq)
    assert rec["rollout"]["state"] == "halted"
    assert mon.actions == [("fleet/p/stable", {**ANN, "rollout": {"id": rid, "below": 0}},
                            True)]
    s = mon.summary()
    rel = s["releases"]["2.1.0"]
    assert rel["counts"] == {"rolled_back": 2}
    assert all(o["reason"] == "self-test of 2.1.0 failed: x" for o in rel["devices"].values())
    assert s["rollouts"][0]["state"] == "halted" and s["kind"] == "summary"
    json.dumps(s)


def test_cli_status_and_errors(tmp_path, store, where):
    feed_fleet(store, 3)
    rid = store.create(ANN, "p", "stable", 100)["rollout_id"]
    keys = tmp_path / "keys"
    keys.mkdir()
    db = where
    runner = CliRunner()
    res = runner.invoke(rollout_group, ["status", rid, "--keys", str(keys), "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["admitted"] == 3
    res = runner.invoke(rollout_group, ["status", "--keys", str(keys), "--db", db])
    assert res.exit_code == 0 and f"rollout {rid} of 2.1.0 on stable: active" in res.output
    res = runner.invoke(rollout_group, ["pause", "nope", "--keys", str(keys), "--db", db,
                                        "--broker", "127.0.0.1:1"])
    assert isinstance(res.exception, rollout.RolloutError)
    res = runner.invoke(rollout_group, ["advance", rid, "--to", "100", "--keys", str(keys),
                                        "--db", db, "--broker", "nonsense"])
    assert isinstance(res.exception, UsageError)
    assert [c.name for c in COMMANDS] == ["rollout"]
    for sub in ("status", "advance", "pause", "abort"):
        res = runner.invoke(rollout_group, [sub, "--help"])
        assert res.exit_code == 0 and "--keys" in res.output


def test_an_unusable_store_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        rollout.Store.open(tmp_path / "missing" / "r.sqlite")
    with pytest.raises(rollout.RolloutError, match="cannot open"):
        rollout.Store.open("postgresql://nobody@127.0.0.1:1/none")


def test_publish_refuses_bad_rollout_options_before_storing_anything(tmp_path):
    from host_tools.cloud import updateserver

    (tmp_path / "b.bin").write_bytes(b"not read")
    for opts in ({"rollout": 0}, {"rollout": 101}, {"rollout": 10, "halt_failures": 0},
                 {"rollout": 10, "halt_after": 0}):
        with pytest.raises(UsageError):
            updateserver.publish(tmp_path / "b.bin", "stable", "https://u", "127.0.0.1:1",
                                 tmp_path / "keys", tmp_path / "served", verify=False,
                                 db=tmp_path / "r.sqlite", **opts)
    assert not (tmp_path / "served").exists() and not (tmp_path / "r.sqlite").exists()
