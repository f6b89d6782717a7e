"""Power-loss sweep: cut the power at every flash write of an update, a confirm and a rollback;
every cut must end in a verified boot."""

import json
import shutil

import pytest

from host_tools import bundle, keys, mpy, sim

SCRIPT = mpy.REPO / "tests" / "device" / "powerloss.py"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    d = tmp_path_factory.mktemp("pl")
    keys.init(d / "keys")
    bundle.build(d / "keys", ["unix"], "1.0.0", 1, out=d / "v1.bin")
    meta, files = bundle.collect_app()
    files["assets/table.bin"] = bytes(range(256)) * 192  # 48 KiB: a file spanning blocks
    bundle.build(d / "keys", ["unix"], "2.0.0", 2, out=d / "v2.bin", files=files,
                 product=meta["product"])
    sim.create(d / "dev", d / "keys", d / "v1.bin")
    return d


@pytest.mark.parametrize("kind", ["update", "rollback"])
def test_every_cut_point_boots_a_verified_slot(template, tmp_path, kind):
    work = tmp_path / "flash.bin"
    shutil.copyfile(template / "dev" / "flash.bin", work)
    proc = mpy.run(SCRIPT, [template / "dev" / "flash.bin", work, template / "v2.bin", kind,
                            "2.0.0", "1.0.0"], timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\npower-loss sweep ({kind}): {result['cut_points']} cut points, "
          f"outcomes {result['outcomes']}")
    assert result["cut_points"] > 20
    assert result["failures"] == []
    # The rollback sweep starts where the scenarios part: the update sweep cuts the shared
    # install and trial boot; rollback cuts the rollback and the boots after it.
    assert result["first"] == 1 if kind == "update" else result["first"] > 20
    assert sum(result["outcomes"].values()) == result["cut_points"]
    if kind == "update":
        assert result["final"] == "2.0.0"
        # both sides of the commit point were hit: cuts before it boot 1.0.0, after it 2.0.0
        assert "1.0.0" in result["outcomes"]
        assert any(k.startswith("2.0.0") for k in result["outcomes"])
    else:
        assert result["final"] == "1.0.0"


def test_nor_model_tears_every_shape_reproducibly(tmp_path):
    from host_tools import flashimage
    image = flashimage.create_blank(tmp_path / "flash.bin")
    proc = mpy.run(mpy.REPO / "tests" / "device" / "nor_powercut.py", [image], timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout + proc.stderr


# --- The findings of issue 21, one test each (tests/device/powerloss_findings.py) -----------

FINDINGS = mpy.REPO / "tests" / "device" / "powerloss_findings.py"


@pytest.fixture(scope="module")
def findings_env(tmp_path_factory):
    from host_tools import ca
    d = tmp_path_factory.mktemp("findings")
    k = d / "keys"
    keys.init(k)
    ca.init(k)
    meta, files = bundle.collect_app()
    files = bundle.compile_files(files, ["unix"])
    b = {}

    def build(name, version, sec, serial=None):
        bundle.build(k, ["unix"], version, sec, out=d / f"{name}.bin", files=files,
                     product=meta["product"], compile=False, serial=serial)
        b[name] = str(d / f"{name}.bin")
    for v in (1, 2, 3, 4, 5):
        build(f"v{v}", f"{v}.0.0", v)
    keys.rotate(k)  # update key serial 2
    build("v2_key2", "2.0.0", 2)
    build("v3_key2", "3.0.0", 3)
    build("v2b_key2", "2.5.0", 2)
    build("v4_key1", "4.0.0", 4, serial=1)
    info = sim.create(d / "dev", k, d / "v1.bin", iterations=1000)
    data_files = sorted(p for p in files if not p.endswith((".py", ".mpy")))
    return {"template": str(d / "dev" / "flash.bin"), "bundles": b, "label": info["password"],
            "data_files": data_files}


@pytest.mark.parametrize("case", ["torn_suffix", "save_fails", "aged_erase", "bit_flips",
                                  "state_lost", "crash_loop", "key_floor", "fallback_floor",
                                  "all_files_hashed", "records"])
def test_issue21_finding(findings_env, tmp_path, case):
    conf = tmp_path / "case.json"
    conf.write_text(json.dumps({**findings_env, "work": str(tmp_path / "flash.bin")}))
    proc = mpy.run(FINDINGS, [case, conf], extra_path=[mpy.REPO / "firmware"], timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), \
        proc.stdout[-3000:] + proc.stderr[-3000:]


def test_powercut_sweep_sample():
    """A bounded sample of `make powercut` (tools/powercut.py): every 37th cut state of the four
    jobs in the three tear shapes, every 5th of their last 30 (trial and confirm, where the
    recovery writes and is cut again), every 4th used block flipped at rest (the app's code is
    one ROMFS image per slot now, in fewer blocks than its files took on littlefs); 0 bad."""
    import sys
    sys.path.insert(0, str(mpy.REPO / "tools"))
    import powercut
    s = powercut.run(stride=37, jobs=1, flips=1, flip_stride=4, tail=30, tail_stride=5,
                     firmware_sweep=False)  # test_fwupdate sweeps the firmware partition
    print(f"\npowercut sample: {s['powercut_states']} cut states ({s['second_cuts']} cut again),"
          f" {s['biterr_states']} bit flips, {s['seconds']} s")
    assert s["bad"] == [] and s["powercut_bad"] == 0 and s["biterr_bad"] == 0
    assert s["powercut_states"] >= 100 and s["biterr_states"] >= 20 and s["second_cuts"] >= 10
    assert s["overprograms"] == 0  # uncut runs: nothing programmed over unerased bits
    assert s["uncut_used_erases"] > 20  # the aged jobs erase used blocks
    assert {k.split("/")[0] for k in s["shapes"]} == {"program", "erase"}
