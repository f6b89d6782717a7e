"""ROMFS app slots (bootloader/romslots.py): the swap under power cuts (every operation,
every tear shape, a second cut at every operation of the recovery), the migration of a
device with directory slots, and the image built by MicroPython's own ROMFS builder."""

import pytest

from host_tools import bundle, keys, mpy, sim

DEVICE = mpy.REPO / "tests" / "device"


def _ok(proc):
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1:] == ["OK"], \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_swap_survives_every_cut_and_a_second_cut_in_recovery(tmp_path):
    out = _ok(mpy.run(DEVICE / "romfs_swap.py", [tmp_path], timeout=900))
    print(out)
    ops, cuts, seconds = [int(w) for w in out.split("swap: ")[1].split()[0:6:2]]
    assert ops >= 20 and cuts == 3 * ops and seconds > cuts


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("romfs")
    keys.init(d / "keys")
    b = {}
    for name, version, sec, layout in (("dir1", "1.0.0", 5, "dir"), ("rom2", "2.0.0", 5, "romfs"),
                                       ("rom3", "3.0.0", 6, "romfs"),
                                       ("down", "1.5.0", 4, "romfs")):
        b[name] = d / f"{name}.bin"
        bundle.build(d / "keys", ["unix"], version, sec, out=b[name], layout=layout)
    sim.create(d / "dev", d / "keys", b["rom2"])
    b["dev"] = d / "dev"
    return b


def test_rom_bundle_is_one_image_by_mpremote(bundles):
    p = bundle.parse(bundles["rom2"].read_bytes())
    assert [f["path"] for f in p.manifest["files"]] == ["app.romfs"]
    from mpremote.romfs import VfsRomWriter
    data = bundles["rom2"].read_bytes()[p.payload_offset:]
    assert data[:3] == VfsRomWriter.ROMFS_HEADER
    d = bundle.parse(bundles["dir1"].read_bytes())
    assert "app.mpy" in [f["path"] for f in d.manifest["files"]]


def test_directory_device_migrates_by_an_ordinary_update(bundles):
    _ok(mpy.run(DEVICE / "romfs_migrate.py", [sim.image_path(bundles["dev"]), bundles["dir1"],
                                              bundles["rom2"], bundles["rom3"], bundles["down"]],
                timeout=300))
