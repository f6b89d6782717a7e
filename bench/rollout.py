"""A staged rollout of a broken release, measured: how many devices install it before the
rollout halts itself (docs/cloud-link.md, "Staged rollouts").

The real thing, as tests/e2e/test_rollout.py runs it: six simulated devices, mosquitto with
the product's own configuration and ACL (updateserver.broker_config), the bundle on Debian's
nginx, `iotctl monitor` as the service in its own process keeping the rollout store, and a
release whose self-test always fails published with `--rollout 34 --halt-after 2
--halt-failures 50 --spread 0`. Figures:
- fleet_rollout_halt_devices: devices that installed the broken release before the halt
  (target: at most 2 of 6);
- fleet_rollout_downloads: downloads nginx served (every one of them a cohort device's);
- fleet_rollout_halt_s: from the announcement to the halt (download, install, restart, the
  self-test's rollback, restart, the outcome through the outbox and the broker).

The bound for N devices: the cohort is k = floor(P * N / 100) of the devices the service
knows (host_tools/cloud/rollout.py), and no other device starts the release, so at most k install
it whatever the timing; within the cohort, with the starts spread uniformly over S seconds
and T seconds from a start to its failure reaching the service, the halt comes after the
m-th failure (m = --halt-after), so about min(k, m + k * T / S) install it.
`fleet_rollout_model_*` evaluates that for a 10,000-device fleet at 5 % (S = 600 s, T = 60 s)
by feeding the rollout store the outcomes in time order, with the real cohort rule.
"""

import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host_tools import bundle, ca, keys, sim
from host_tools.cloud import rollout, updateserver

DEVICES, PERCENT, HALT_AFTER, HALT_FAILURES = 6, 34, 2, 50
FAST = {"telemetry_s": 60, "keepalive_s": 30,
        "backoff": {"base_ms": 500, "cap_ms": 2000, "initial_window_ms": 300}}


def _iotctl(*args):
    return [sys.executable, "-c", "from host_tools.cli import main; main()", *map(str, args)]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise RuntimeError(f"bench rollout: no {what} within {timeout} s")


def measured():
    from tests.nginx import Nginx  # needs nginx installed (apt-get install nginx)

    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        tmp = Path(tmp)
        kd = tmp / "keys"
        keys.init(kd)
        ca.init(kd)
        bundle.build(kd, ["unix"], "1.0.0", 1, out=tmp / "v1.bin")
        meta, files = bundle.collect_app()
        files["selftest.py"] = (b"async def run(thermostat, timeout_ms=0, ticks=0):\n"
                                b"    return 'sensor driver missing'\n")
        bundle.build(kd, ["unix"], "2.1.0", 1, out=tmp / "bad.bin", files=files,
                     product=meta["product"])
        port = _free_port()
        conf = updateserver.broker_config(kd, tmp / "broker", port)
        broker = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        addr = f"127.0.0.1:{port}"
        (tmp / "updates").mkdir()
        web = Nginx(tmp / "nginx", kd, tmp / "updates").start()
        made, mon = [], None
        db = tmp / "rollouts.sqlite"
        try:
            _wait(lambda: socket.create_connection(("127.0.0.1", port), 0.2).close() or True,
                  10, "broker")
            updateserver.service_dir(kd).mkdir(exist_ok=True)
            mon = subprocess.Popen(_iotctl("monitor", "--broker", addr, "--keys", kd, "--db",
                                           db, "--json"), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            ids = []
            for i in range(DEVICES):
                d = tmp / f"dev{i}"
                made.append(d)
                info = sim.create(d, kd, tmp / "v1.bin", iterations=1000,
                                  cloud={"host": "127.0.0.1", "port": port, **FAST})
                ids.append(info["device_id"])
                sim.start(d)

            def known():
                with rollout.Store.open(db) as s:
                    return sorted(s.fleet("stable")) == sorted(ids)
            _wait(known, 60, "fleet")
            t0 = time.monotonic()
            pub = updateserver.publish(tmp / "bad.bin", "stable", web.url(), addr, kd,
                                       tmp / "updates", spread_s=0, rollout=PERCENT,
                                       halt_failures=HALT_FAILURES, halt_after=HALT_AFTER,
                                       db=db)
            rid = pub["rollout"]["rollout"]

            def halted():
                with rollout.Store.open(db) as s:
                    return s.status(rid)["state"] == "halted"
            _wait(halted, 120, "halt")
            halt_s = time.monotonic() - t0
            time.sleep(5)  # anything that would still start after the halt
            downloads = [r for r in web.requests() if r["path"].endswith(".bin")]
        finally:
            out = ""
            if mon is not None:
                mon.send_signal(signal.SIGINT)
                try:
                    out = mon.communicate(timeout=30)[0]
                except subprocess.TimeoutExpired:
                    mon.kill()
                    out = mon.communicate()[0]
            for d in made:
                sim.powercut(d)
            web.stop()
            broker.terminate()
            broker.wait()
    installed, halt_seen = set(), False
    for line in out.splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "events" and rec["data"].get("type") == "update" \
                and rec["data"].get("state") == "installed" and not halt_seen:
            installed.add(rec["device_id"])
        halt_seen = halt_seen or "rollout" in rec
    return {"fleet_rollout_devices": DEVICES, "fleet_rollout_percent": PERCENT,
            "fleet_rollout_halt_after": HALT_AFTER,
            "fleet_rollout_halt_devices": len(installed),
            "fleet_rollout_downloads": len(downloads),
            "fleet_rollout_halt_s": round(halt_s, 1)}


def model(n=10_000, percent=5, spread_s=600, fail_s=60, seed=19):
    """The formula's case, fed through the real rollout store in time order."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-rollout-model-") as tmp, \
            rollout.Store.open(Path(tmp) / "r.sqlite") as s:
        s.conn.execute("PRAGMA synchronous = OFF")  # a model's scratch store: no fsyncs
        ids = [f"dev-{i:05d}" for i in range(n)]
        for d in ids:
            s.seen(d, {"version": "1.0.0", "channel": "stable"}, now=0)
        ann = {"url": "https://u/x.bin", "sha256": "ab" * 32, "size": 1, "version": "2.1.0"}
        r = s.create(ann, "p", "stable", percent, HALT_FAILURES, HALT_AFTER, now=0)
        rid, below = r["rollout_id"], r["below"]
        cohort = [d for d in ids if rollout.device_hash(rid, d) < below]
        starts = sorted((rng.uniform(0, spread_s), d) for d in cohort)
        reports = sorted((t + fail_s, d) for t, d in starts)
        halt_t = None
        for t, d in reports:
            if s.outcome(d, {"type": "update", "rollout": rid, "version": "2.1.0",
                             "state": "rolled_back"}, now=int(t)):
                halt_t = t
                break
        started = sum(1 for t, _ in starts if halt_t is None or t < halt_t)
    k = percent * n // 100
    return {"fleet_rollout_model_devices": n, "fleet_rollout_model_percent": percent,
            "fleet_rollout_model_cohort": len(cohort),
            "fleet_rollout_model_halt_devices": started,
            "fleet_rollout_model_formula": round(min(k, HALT_AFTER + k * fail_s / spread_s), 1)}


def run():
    return {**measured(), **model()}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
