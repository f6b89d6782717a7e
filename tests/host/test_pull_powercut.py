"""Power-loss sweep of a pulled download (firmware/pullstate.py): the power is cut at flash
operations of a 220 KiB download, every STRIDE-th one in `make test` (PULL_SWEEP_STRIDE,
default 7), every one with `make powercut-pull`; and again and again in one download. Every
cut resumes from what the flash holds and ends in a verified trial of the new version, and
the bytes fetched (before and after the cuts) stay under twice the bundle."""

import hashlib
import json
import os
import shutil

import pytest

from host_tools import bundle, keys, mpy, sim

SCRIPT = mpy.REPO / "tests" / "device" / "pull_powercut.py"
STRIDE = int(os.environ.get("PULL_SWEEP_STRIDE", "7"))
EVERY = 40  # the repeated cuts: one every 40 flash operations


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    d = tmp_path_factory.mktemp("pullcut")
    keys.init(d / "keys")
    bundle.build(d / "keys", ["unix"], "1.0.0", 1, out=d / "v1.bin")
    meta, files = bundle.collect_app()
    # 288 KiB: cut in its middle too. (A raw ROMFS region takes one erase per sector and one
    # program per network read: fewer flash operations per byte than littlefs, so the asset
    # is larger than the 96 KiB that gave directory slots as many cut points.)
    files["assets/table.bin"] = bytes(range(256)) * 1152
    bundle.build(d / "keys", ["unix"], "2.0.0", 1, out=d / "v2.bin", files=files,
                 product=meta["product"])
    sim.create(d / "dev", d / "keys", d / "v1.bin")
    return d


def test_every_cut_resumes_into_a_verified_slot(template, tmp_path):
    work = tmp_path / "flash.bin"
    shutil.copyfile(template / "dev" / "flash.bin", work)
    sha = hashlib.sha256((template / "v2.bin").read_bytes()).hexdigest()
    proc = mpy.run(SCRIPT, [template / "dev" / "flash.bin", work, template / "v2.bin", sha,
                            "2.0.0", STRIDE, EVERY], extra_path=[mpy.REPO / "firmware"],
                   timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\npulled-download power-loss sweep: {r['cuts']} of {r['cut_points']} cut points, "
          f"{r['resumed']} resumed from flash, {r['committed']} after the commit; worst "
          f"{r['worst_fetched']} bytes fetched for {r['size']}; {r['repeated_cuts']} cuts in "
          f"one download: {r['repeated_fetched']} bytes")
    assert r["failures"] == []
    assert r["cut_points"] > 200 and r["cuts"] >= r["cut_points"] // STRIDE
    # Past the signed prefix, nearly every cut resumes rather than starting again.
    assert r["resumed"] >= 0.8 * r["cuts"]
    assert r["worst_fetched"] < 2 * r["size"]
    assert r["repeated_cuts"] >= 5 and r["repeated_fetched"] < 2 * r["size"]
