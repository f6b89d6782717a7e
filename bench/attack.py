"""The owner under a connection-exhaustion attack (tests/e2e/slowloris.py: silent sockets and
byte-a-time TLS handshakes from another address, each reopened as soon as it is dropped):
the fraction of the owner's requests answered within 3 s, and the device's peak live heap
with its connection slots full, for a small and a large attack (bounded: about the same)."""

import json
import tempfile
import time
from pathlib import Path

from host_tools import bundle, ca, keys, push, sim
from tests.e2e.slowloris import Attack

PROBES = 30
DEADLINE_S = 3.0


def _device(tmp, kd, v1, n):
    d = Path(tmp) / f"dev{n}"
    info = sim.create(d, kd, v1, iterations=1000, heap_sample_ms=10)
    sim.start(d)
    sim.wait_api(d)
    return d, info


def _peak(d):
    return json.loads((d / "run" / "heap.json").read_text())["peak_live_bytes"]


def _under_attack(d, info, kd, sockets):
    host, port = push.parse_device(sim.https_address(d))
    owner = push.Device(sim.https_address(d), info["password"], ca=kd / "ca.crt",
                        name=info["device_id"], timeout=DEADLINE_S)
    owner.login()
    owner.status()
    time.sleep(1.0)
    idle = _peak(d)
    served = 0
    with Attack(host, port, "127.0.0.2", idle=sockets // 2, slow=sockets // 2,
                name=info["device_id"]):
        time.sleep(1.0)
        for _ in range(PROBES):
            t0 = time.monotonic()
            try:
                ok = owner.status()["version"] == "1.0.0"
            except Exception:  # noqa: BLE001 - not served (in time) is what is counted
                ok = False
            served += ok and time.monotonic() - t0 < DEADLINE_S
            time.sleep(0.2)
    return served / PROBES, idle, _peak(d)


def run():
    with tempfile.TemporaryDirectory(prefix="bench-attack-") as tmp:
        kd = Path(tmp) / "keys"
        keys.init(kd)
        ca.init(kd)
        v1 = Path(tmp) / "v1.bin"
        bundle.build(kd, ["unix"], "1.0.0", 1, out=v1)
        out = {}
        for n, sockets in enumerate((8, 32)):
            d, info = _device(tmp, kd, v1, n)
            try:
                frac, idle, peak = _under_attack(d, info, kd, sockets)
            finally:
                sim.powercut(d)
            if sockets == 8:
                out["http_idle_peak_heap_kib"] = round(idle / 1024, 1)
                out["owner_served_under_slowloris_fraction_8_sockets"] = frac
            else:
                out["owner_served_under_slowloris_fraction"] = frac  # 16 idle + 16 slow
            out[f"http_slots_full_peak_heap_kib_{sockets}_sockets"] = round(peak / 1024, 1)
        return out
