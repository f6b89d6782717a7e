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
