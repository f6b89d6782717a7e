"""Boot-stage benchmarks: verification of a 256 KiB slot and the smallest heap that boots."""

import json
import os
import tempfile
from pathlib import Path

from host_tools import bundle, keys, mpy, sim

HERE = Path(__file__).parent / "device"
SLOT_BYTES = 256 * 1024


def _device(tmp, alg="ed25519", nfiles=None, name="dev"):
    """A simulated device whose app slot is a 256 KiB ROMFS image: the app padded with data
    files; or (nfiles) exactly that many files of equal size (for the files slope: it boots
    the boot stage's verification only, not the app)."""
    if not (tmp / "keys").exists():
        keys.init(tmp / "keys", alg)
    meta, files = bundle.collect_app()
    files = bundle.compile_files(files, ["unix"])
    if nfiles:
        files = {}
        for i in range(nfiles):
            files[f"assets/f{i}.bin"] = os.urandom(SLOT_BYTES // nfiles)
    target = SLOT_BYTES
    image = bundle.romfs_image(files)
    last = sorted(files)[-1]
    i = 0
    while len(image) < target:  # pad the image to 256 KiB with data files
        last = f"assets/blob{i}.bin"
        files[last] = os.urandom(min(32 * 1024, target - len(image)))
        image = bundle.romfs_image(files)
        i += 1
    for _ in range(8):  # the ROMFS records' own bytes: the last data file takes up the rest
        if len(image) == target:
            break
        n = len(files[last]) - (len(image) - target)
        files[last] = (files[last] + os.urandom(max(0, n - len(files[last]))))[:n]
        image = bundle.romfs_image(files)
    bundle.build(tmp / "keys", ["unix"], "1.0.0", 1, out=tmp / f"{name}.bin", files=files,
                 product=meta["product"], compile=False)
    sim.create(tmp / name, tmp / "keys", tmp / f"{name}.bin")
    return tmp / name


def _boots(dev, kib, frozen):
    """(booted, bytes of the ROMFS map) with `kib` KiB of heap."""
    if frozen:  # map and boot-stage code first, then only `kib` KiB left free
        proc = mpy.run(HERE / "boot_heap.py", [dev, kib], heapsize="2m", timeout=60)
    else:
        proc = mpy.run(HERE / "boot_heap.py", [dev], heapsize=f"{kib}k", timeout=60)
    ok = proc.returncode == 0 and "BOOT-OK" in proc.stdout
    return ok, int(proc.stdout.split("map=")[1].split()[0]) if ok else 0


def min_heap_kib(dev, frozen, lo=4, hi=1024):
    """Binary search for the smallest heap (KiB) at which the boot stage boots. Unfrozen, the
    heap must also hold the map of the ROMFS region (the unix port has no memory outside it;
    a board maps flash), allocated first and in one piece: its size is taken out."""
    ok, mapped = _boots(dev, hi, frozen)
    if not ok:
        raise RuntimeError("boot stage does not boot even with %d KiB" % hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if _boots(dev, mid, frozen)[0]:
            hi = mid
        else:
            lo = mid + 1
    return lo if frozen else lo - mapped // 1024


def _verify_bench(dev, runs, *others):
    proc = mpy.run(HERE / "boot_bench.py", [dev, runs, *others], timeout=600)
    if proc.returncode:
        raise RuntimeError(proc.stderr or proc.stdout)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["slot_bytes"] == SLOT_BYTES, r
    return r


def run(runs=30):
    with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp:
        dev = _device(Path(tmp))
        # The same 256 KiB in 15 files and in 60, measured in the same loop: a ROMFS slot is
        # hashed as one image, so the number of files must not change the time (directory
        # slots paid per file).
        few_dev = _device(Path(tmp), nfiles=15, name="few")
        many_dev = _device(Path(tmp), nfiles=60, name="many")
        r = _verify_bench(dev, runs, few_dev, many_dev)
        ratio = r["boot_verify_ms"] / r["one_verify_plus_hash_ms"]
        few, many = r["others"]
        assert few["slot_bytes"] == many["slot_bytes"] == SLOT_BYTES, r
        slope = (many["boot_verify_ms"] / many["one_verify_plus_hash_ms"]) / \
            (few["boot_verify_ms"] / few["one_verify_plus_hash_ms"])
        return {
            "boot_verify_256k_ms": round(r["boot_verify_ms"], 3),
            "boot_one_verify_plus_hash_256k_ms": round(r["one_verify_plus_hash_ms"], 3),
            "boot_verify_overhead_ratio": round(ratio, 3),
            # The certificate's root signature is a second Ed25519 verification in every boot
            # verification and in none of the baseline: the ratio cannot go below
            # (2 x signature + hash) / (signature + hash) without dropping that check.
            "boot_cert_check_ms": round(r["cert_check_ms"], 3),
            "boot_verify_ratio_floor_two_signatures": round(
                (r["one_verify_plus_hash_ms"] + r["cert_check_ms"])
                / r["one_verify_plus_hash_ms"], 3),
            # The same authentication of the same prefix plus the same hash, from RAM: the
            # ratio is what reading the slot from its storage adds (1.0 = nothing).
            "boot_verify_storage_overhead_ratio": round(
                r["boot_verify_ms"] / r["prefix_in_ram_plus_hash_ms"], 3),
            "boot_verify_files_slope": round(slope, 3),
            "boot_stage_min_heap_kib": min_heap_kib(dev, frozen=True),
            "boot_stage_min_heap_unfrozen_kib": min_heap_kib(dev, frozen=False),
        }
