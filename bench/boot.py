"""Boot-stage benchmarks: verification of a 256 KiB slot and the smallest heap that boots."""

import json
import os
import tempfile
from pathlib import Path

from host_tools import bundle, keys, mpy, sim

HERE = Path(__file__).parent / "device"
SLOT_BYTES = 256 * 1024


def _device(tmp, alg="ed25519"):
    keys.init(tmp / "keys", alg)
    meta, files = bundle.collect_app()
    files = bundle.compile_files(files, ["unix"])
    rest = SLOT_BYTES - sum(len(v) for v in files.values())
    chunk = 32 * 1024
    i = 0
    while rest > 0:  # pad the app to exactly 256 KiB with data files
        n = min(chunk, rest)
        files[f"assets/blob{i}.bin"] = os.urandom(n)
        rest -= n
        i += 1
    bundle.build(tmp / "keys", ["unix"], "1.0.0", 1, out=tmp / "b.bin", files=files,
                 product=meta["product"], compile=False)
    sim.create(tmp / "dev", tmp / "keys", tmp / "b.bin")
    return tmp / "dev"


def _boots(dev, kib, frozen):
    if frozen:  # boot-stage code loaded first, then only `kib` KiB left free
        proc = mpy.run(HERE / "boot_heap.py", [dev, kib], heapsize="1m", timeout=60)
    else:
        proc = mpy.run(HERE / "boot_heap.py", [dev], heapsize=f"{kib}k", timeout=60)
    return proc.returncode == 0 and "BOOT-OK" in proc.stdout


def min_heap_kib(dev, frozen, lo=4, hi=512):
    """Binary search for the smallest heap (KiB) at which the boot stage boots."""
    if not _boots(dev, hi, frozen):
        raise RuntimeError("boot stage does not boot even with %d KiB" % hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if _boots(dev, mid, frozen):
            hi = mid
        else:
            lo = mid + 1
    return lo


def run(runs=30):
    with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp:
        dev = _device(Path(tmp))
        proc = mpy.run(HERE / "boot_bench.py", [dev, runs], timeout=300)
        if proc.returncode:
            raise RuntimeError(proc.stderr or proc.stdout)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        assert r["slot_bytes"] == SLOT_BYTES, r
        return {
            "boot_verify_256k_ms": round(r["boot_verify_ms"], 3),
            "boot_one_verify_plus_hash_256k_ms": round(r["one_verify_plus_hash_ms"], 3),
            "boot_verify_overhead_ratio": round(r["boot_verify_ms"]
                                                / r["one_verify_plus_hash_ms"], 3),
            "boot_stage_min_heap_kib": min_heap_kib(dev, frozen=True),
            "boot_stage_min_heap_unfrozen_kib": min_heap_kib(dev, frozen=False),
        }
