"""`make powercut`: the power-cut and bit-rot sweep of the simulated board
(tests/device/powercut_sweep.py), split over processes, with one summary.

    python tools/powercut.py [--stride N] [--jobs 2] [-o build/powercut.json]

States: every flash operation of an update with its confirm and of an update with its
rollback (app slots; and the firmware-partition update, tests/device/fw_powerloss.py), on a
young filesystem (first update after the factory) and an aged one (after three
updates), each cut in the three tear shapes of boards/unix/flash.py (prefix, suffix, scattered
bits for a program; half, 4.5 % and 0.35 % residual zeros for an erase), about half of them cut
a second time during the recovery, every one followed by one more update that must succeed;
plus one flipped bit at rest in every used block of the data and factory partitions (slots,
state records, owner records, littlefs metadata, factory data). A state is bad when the device
crashes, loops, runs an unapproved version, enters alert-only mode with a valid slot left,
lowers a floor, loses an owner record in silence, or cannot take the next update.
"""

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host_tools import bundle, ca, flashimage, keys, mpy, sim  # noqa: E402
from host_tools.esp import micropython_image as firmware  # noqa: E402
from tests.fakes.appimage import make_app_image  # noqa: E402

SCRIPT = mpy.REPO / "tests" / "device" / "powercut_sweep.py"
FW_SCRIPT = mpy.REPO / "tests" / "device" / "fw_powerloss.py"
YOUNG = ("1.0.0", "2.0.0")
AGED = (["2.0.0", "3.0.0", "4.0.0"], "5.0.0")
LAST = "9.0.0"


def prepare(d):
    """Keys, a CA, bundles 1.0.0 .. 5.0.0 and 9.0.0 (security version = major), and a
    provisioned simulated device running 1.0.0. Returns (template, bundles, label password)."""
    d = Path(d)
    keys.init(d / "keys")
    ca.init(d / "keys")
    meta, files = bundle.collect_app()
    files = bundle.compile_files(files, ["unix"])
    paths = {}
    for v in ("1.0.0", "2.0.0", "3.0.0", "4.0.0", "5.0.0", LAST):
        paths[v] = str(d / f"v{v}.bin")
        bundle.build(d / "keys", ["unix"], v, int(v.split(".")[0]), out=d / f"v{v}.bin",
                     files=files, product=meta["product"], compile=False)
    info = sim.create(d / "dev", d / "keys", d / "v1.0.0.bin", iterations=1000)
    return str(d / "dev" / "flash.bin"), paths, info["password"]


def prepare_firmware(d):
    """A unix flash image with a factory-flashed MicroPython 1.0.0 in ota_0 (fake ESP app
    images), and a signed firmware bundle of 2.0.0 whose last sector is partial."""
    d = Path(d) / "fw"
    d.mkdir()
    keys.init(d / "keys")
    img = d / "flash.bin"
    flashimage.create_blank(img, board="unix")
    flashimage.write_partition(img, "ota_0", make_app_image("esp32", "1.0.0", 20000, b"old"),
                               board="unix")
    flashimage.write_files(img, "fctry", {
        "anchors.json": json.dumps(keys.anchors(d / "keys")).encode(),
        "identity.json": json.dumps({"device_id": "fw-sweep", "product": sim.PRODUCT,
                                     "model": sim.MODEL, "board": "esp32"}).encode()})
    new = d / "new.bin"
    new.write_bytes(make_app_image("esp32", "2.0.0", 23000, b"new"))
    firmware.build(new, d / "keys", "esp32", "2.0.0", 2, out=d / "v2.bnd", product=sim.PRODUCT)
    return img, d / "v2.bnd"


def _run_fw(d, kind, shapes):
    img, bnd = d
    work = img.parent / f"work-{kind}.bin"
    proc = mpy.run(FW_SCRIPT, [img, work, bnd, kind, "2.0.0", "1.0.0",
                               ",".join(str(x) for x in shapes)], timeout=3600)
    try:
        r = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"states": 0, "bad_count": 1,
                "bad": [f"firmware {kind}: sweep crashed: {(proc.stderr or proc.stdout)[-1500:]}"]}
    return {"states": r["states"], "bad_count": len(r["failures"]),
            "bad": [f"firmware {kind}: {f}" for f in r["failures"]],
            "ops": {f"firmware/{kind}": r["cut_points"]}, "outcomes": {
                f"firmware {k}": v for k, v in r["outcomes"].items()}}


def _run_one(d, name, spec):
    conf = Path(d) / f"{name}.json"
    conf.write_text(json.dumps(spec))
    proc = mpy.run(SCRIPT, [conf], extra_path=[mpy.REPO / "firmware"], timeout=7200)
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        return {"bad_count": 1, "bad": [f"{name}: sweep crashed: "
                                        f"{(proc.stderr or proc.stdout)[-1500:]}"],
                "states": 0, "biterr_bad": 0}


def run(stride=1, jobs=2, flips=1, second=True, final=True, shapes=(0, 1, 2), phase=0,
        workdir=None, flip_stride=1, tail=0, tail_stride=1, firmware_sweep=True):
    """Run the sweep; returns the summary (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="powercut-", dir=workdir) as d:
        t0 = time.monotonic()
        template, paths, label = prepare(d)
        base = {"template": template, "bundles": paths, "young": list(YOUNG),
                "aged": [AGED[0], AGED[1]], "last": LAST, "shapes": list(shapes),
                "stride": stride, "phase": phase, "flip_stride": flip_stride, "tail": tail,
                "tail_stride": tail_stride, "second": second,
                "final": final,
                "owner": {"label": label, "owner": "owner-pass-7731", "setpoint": 23.5}}
        prep = _run_one(d, "prepare", {**base, "jobs": [], "prepare": True,
                                         "work": str(Path(d) / "prep.bin")})
        if "aged_images" not in prep:
            raise RuntimeError("aged filesystem could not be prepared: %s" % prep["bad"])
        base["aged_images"] = prep["aged_images"]
        parts = {}
        for age in ("young", "aged"):
            for kind in ("update", "rollback"):
                parts[f"{age}-{kind}"] = {**base, "jobs": [{"age": age, "kind": kind}]}
        if flips:
            parts["flips"] = {**base, "jobs": [], "flips": flips}
        for name, spec in parts.items():
            spec["work"] = str(Path(d) / f"{name}.bin")
        fw = prepare_firmware(d) if firmware_sweep else None
        with ThreadPoolExecutor(jobs) as ex:
            futures = {name: ex.submit(_run_one, d, name, spec) for name, spec in parts.items()}
            if fw:
                for kind in ("update", "rollback"):
                    futures[f"firmware-{kind}"] = ex.submit(_run_fw, fw, kind, shapes)
            results = {name: f.result() for name, f in futures.items()}
    summary = {"powercut_states": 0, "powercut_bad": 0, "biterr_states": 0, "biterr_bad": 0,
               "second_cuts": 0, "used_erases": 0, "overprograms": 0, "uncut_used_erases": 0,
               "second_missed": 0, "shapes": {},
               "ops": {}, "outcomes": {}, "bad": [], "seconds": 0}
    for name, r in results.items():
        if name == "flips":
            summary["biterr_states"] += r.get("flips", 0)
            summary["biterr_bad"] += r.get("bad_count", 0)
            summary["alert_only"] = r.get("alert_only", {})
        else:
            summary["powercut_states"] += r.get("states", 0)
            summary["powercut_bad"] += r.get("bad_count", 0)
        for k in ("second_cuts", "used_erases", "overprograms", "uncut_used_erases",
                  "second_missed"):
            summary[k] += r.get(k, 0)
        for k, v in r.get("shapes", {}).items():
            summary["shapes"][k] = summary["shapes"].get(k, 0) + v
        for k, v in r.get("outcomes", {}).items():
            summary["outcomes"][k] = summary["outcomes"].get(k, 0) + v
        summary["ops"].update(r.get("ops", {}))
        summary["bad"] += r.get("bad", [])
    summary["seconds"] = round(time.monotonic() - t0, 1)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stride", type=int, default=1, help="cut every N-th operation/shape")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--flips", type=int, default=2, help="bit flips per used block")
    ap.add_argument("-o", "--output", default="build/powercut.json")
    args = ap.parse_args()
    s = run(stride=args.stride, jobs=args.jobs, flips=args.flips)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(s, indent=2, sort_keys=True) + "\n")
    print(f"power cuts: {s['powercut_states']} states ({s['second_cuts']} cut again during "
          f"recovery, {s['used_erases']} erases of used sectors), {s['powercut_bad']} bad; "
          f"bit flips: {s['biterr_states']} states, {s['biterr_bad']} bad; "
          f"{s['seconds']} s -> {out}")
    for line in s["bad"][:20]:
        print("  BAD " + line)
    return 1 if s["powercut_bad"] or s["biterr_bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
