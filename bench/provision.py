"""Provisioning benchmarks: host-side cost of one device, a whole serial provisioning over a
pseudo-terminal, and the cost of one password check on the device (unix port)."""

import json
import statistics
import tempfile
import time
from pathlib import Path

from host_tools import ca, keys, mpy, provision

REPO = Path(__file__).resolve().parent.parent

# Run on the device: time Credentials.verify against the sim's own /factory record.
_VERIFY = """\
import json, sys, time, vfs
import flash
from credentials import Credentials
fl = flash.Flash(sys.argv[1] + "/flash.bin")
flash.mount_factory(fl)
c = Credentials("/factory/password.json", sys.argv[1] + "/owner/password.json")
pw = sys.stdin.read().strip()
times = []
for _ in range(int(sys.argv[2])):
    t = time.ticks_us()
    ok = c.verify(pw)
    times.append(time.ticks_diff(time.ticks_us(), t) / 1000)
    assert ok
times.sort()
print(json.dumps({"median_ms": times[len(times) // 2]}))
"""


def run(host_runs=15, verify_runs=5):
    with tempfile.TemporaryDirectory(prefix="bench-provision-") as tmp:
        tmp = Path(tmp)
        keys.init(tmp / "keys")
        ca.init(tmp / "keys")
        db = tmp / "ledger.sqlite"
        host = []
        for _ in range(host_runs):  # id, password, key, certificate, record, ledger, labels
            t = time.perf_counter()
            provision.provision(tmp / "keys", ledger=db, labels=tmp / "labels")
            host.append((time.perf_counter() - t) * 1000)
        with provision.serial_sim(tmp / "board") as port:
            t = time.perf_counter()
            rec = provision.provision(tmp / "keys", ledger=db, port=port)[0]
            serial_s = time.perf_counter() - t
        script = tmp / "verify_bench.py"
        script.write_text(_VERIFY)
        proc = mpy.run(script, [tmp / "board", verify_runs], extra_path=[REPO / "firmware"],
                       input=rec.password, timeout=300)
        if proc.returncode:
            raise RuntimeError(proc.stderr or proc.stdout)
        verify = json.loads(proc.stdout.strip().splitlines()[-1])
        return {
            "provision_host_ms": round(statistics.median(host), 2),
            "provision_serial_s": round(serial_s, 3),
            "password_verify_ms": round(verify["median_ms"], 2),
            "password_pbkdf2_iterations": provision.DEFAULT_ITERATIONS,
        }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
