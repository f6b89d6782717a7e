"""The simulated board's flash and hardware: host images (flashimage) and the device side
(boards/unix/flash.py, hal.py) run under the MicroPython unix port."""

import hashlib
import json
import os
from pathlib import Path

import pytest

from host_tools import flashimage
from host_tools.errors import DeviceError, UsageError
from host_tools.esp import partitions

DEVICE = Path(__file__).resolve().parent.parent / "device"
MIB = 1024 * 1024


def pattern(n, seed):
    """The same bytes as the device scripts' pattern(n, seed)."""
    return bytes((i * 31 + seed) & 0xFF for i in range(n))


def device(run_mpy, script, *args):
    """Run a device script; it must exit 0 and end with OK (or print its JSON last)."""
    result = run_mpy(DEVICE / script, [str(a) for a in args])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    return result.stdout.strip().splitlines()


@pytest.fixture
def image(tmp_path):
    return flashimage.create_blank(tmp_path / "flash.bin")


# --- Host side ---------------------------------------------------------------------------

def test_board_json_fits_the_table_and_littlefs():
    cfg = flashimage.board_config("unix")
    assert (cfg["board"], cfg["chip"], cfg["flash_size"], cfg["block_size"]) == \
        ("unix", "sim", 16 * MIB, 4096)
    table = flashimage.partition_table("unix")
    assert [p.name for p in table] == ["nvs", "otadata", "fctry", "ota_0", "ota_1", "romfs",
                                       "romfs_b", "romfs_s", "vfs", "marks"]
    vfs = partitions.find(table, cfg["data_partition"])
    # The app slots are ROMFS regions of their own (with their prefix sectors): littlefs
    # keeps user data only and has room for it.
    for name in ("romfs", "romfs_b"):
        assert partitions.find(table, name).size >= cfg["slot_capacity"]
    assert vfs.size >= 2 * MIB
    lfs = cfg["littlefs"]
    # MicroPython's VfsLfs2 derives its cache size; the host must use the same one.
    assert lfs["cache_size"] == min(cfg["block_size"], 4 * max(lfs["read_size"], lfs["prog_size"]))
    assert lfs["lookahead_size"] % 8 == 0 and cfg["block_size"] % lfs["cache_size"] == 0
    assert cfg["sim"]["image"] == flashimage.image_name() == "flash.bin"


def test_create_blank_is_erased_and_never_overwrites(tmp_path):
    path = flashimage.create_blank(tmp_path / "f.bin")
    data = path.read_bytes()
    assert len(data) == 16 * MIB and data.count(0xFF) == len(data)
    with pytest.raises(UsageError, match="exists"):
        flashimage.create_blank(path)
    flashimage.write_partition(path, "nvs", b"\x00" * 10)
    flashimage.create_blank(path, overwrite=True)
    assert flashimage.is_blank(path, "nvs")


def test_raw_partitions(image):
    flashimage.write_partition(image, "otadata", b"\x01\x02")
    part = flashimage.find_partition("otadata")
    raw = image.read_bytes()
    assert raw[part.offset:part.offset + 3] == b"\x01\x02\xff"
    assert raw[:part.offset].count(0xFF) == part.offset  # neighbours untouched
    assert flashimage.read_partition(image, "otadata") == b"\x01\x02" + b"\xff" * (part.size - 2)
    flashimage.erase_partition(image, "otadata")
    assert flashimage.is_blank(image, "otadata")


def test_host_errors_are_clear(image, tmp_path):
    with pytest.raises(UsageError, match="no flash image"):
        flashimage.read_partition(tmp_path / "missing.bin", "vfs")
    short = tmp_path / "short.bin"
    short.write_bytes(b"\xff" * 4096)
    with pytest.raises(UsageError, match="4096 bytes"):
        flashimage.read_partition(short, "vfs")
    with pytest.raises(UsageError, match="no partition named"):
        flashimage.read_partition(image, "nope")
    with pytest.raises(UsageError, match="unknown board"):
        flashimage.board_config("nope")
    with pytest.raises(UsageError, match="do not fit"):
        flashimage.write_partition(image, "fctry", b"x" * (0xF000 + 1))
    with pytest.raises(UsageError, match="bad path"):
        flashimage.write_files(image, "vfs", {"a/../b": b""})
    flashimage.write_files(image, "vfs", {"a.txt": b"a"})
    with pytest.raises(UsageError, match="no file"):
        flashimage.read_file(image, "vfs", "b.txt")
    with pytest.raises(UsageError, match="no space"):
        flashimage.write_files(image, "fctry", {"big.bin": bytes(0xF000)})


def test_host_refuses_data_it_cannot_mount(image):
    junk = os.urandom(20000)
    flashimage.write_partition(image, "vfs", junk)
    before = image.read_bytes()
    for call in (lambda: flashimage.list_files(image, "vfs"),
                 lambda: flashimage.write_files(image, "vfs", {"x": b"x"})):
        with pytest.raises(DeviceError, match="refusing to format"):
            call()
    assert image.read_bytes() == before
    flashimage.format_partition(image, "vfs")  # the explicit, destructive way
    assert flashimage.list_files(image, "vfs") == []


def test_host_filesystem_round_trip(image):
    files = {"app/a/main.py": b"print('hi')\n", "/app/a/lib/x.bin": pattern(9000, 4),
             "empty": b""}
    flashimage.write_files(image, "vfs", files)
    flashimage.write_files(image, "vfs", {"app/a/main.py": b"v2", "data/log": b"l"})
    assert flashimage.list_files(image, "vfs") == [
        "app/a/lib/x.bin", "app/a/main.py", "data/log", "empty"]
    assert flashimage.list_files(image, "vfs", root="/app/a/lib") == ["app/a/lib/x.bin"]
    assert flashimage.read_file(image, "vfs", "/app/a/lib/x.bin") == pattern(9000, 4)
    assert flashimage.read_files(image, "vfs", root="app")["app/a/main.py"] == b"v2"
    flashimage.remove_files(image, "vfs", ["app"])
    assert flashimage.list_files(image, "vfs") == ["data/log", "empty"]
    info = flashimage.fs_info(image, "vfs")
    vfs_blocks = 0x3D5000 // 4096  # the vfs partition (after the ROMFS regions)
    assert info["disk_version"] == "2.1" and info["block_count"] == vfs_blocks


# --- Device side -------------------------------------------------------------------------

def test_host_writes_device_reads_and_back(image, tmp_path, run_mpy):
    vfs_files = {
        "app/a/main.py": b"import app\n",
        "app/a/lib/deep/nested/mod.py": b"X = 1\n",
        "app/a/blob.bin": pattern(20000, 7),  # several blocks
        "block.bin": pattern(4096, 9),  # exactly one block
        "empty.txt": b"",
    }
    fctry_files = {"identity.json": b'{"serial": "SIM-0001"}', "cert.der": pattern(700, 3)}
    flashimage.write_files(image, "vfs", vfs_files)
    flashimage.write_files(image, "fctry", fctry_files)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({
        part: {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
        for part, files in (("vfs", vfs_files), ("fctry", fctry_files))}))

    assert device(run_mpy, "flash_fs.py", image, manifest)[-1] == "OK"

    assert flashimage.read_file(image, "vfs", "dev/nested/deep/out.bin") == pattern(9000, 5)
    assert flashimage.read_file(image, "vfs", "dev/small.txt") == b"written on the device\n"
    assert set(flashimage.list_files(image, "vfs")) == set(vfs_files) | {
        "dev/nested/deep/out.bin", "dev/small.txt"}
    assert flashimage.read_files(image, "fctry") == fctry_files  # untouched


def test_nor_rules_and_block_device_protocol(image, run_mpy):
    assert device(run_mpy, "flash_nor.py", image)[-1] == "OK"


def test_power_cut_at_every_operation(tmp_path, image, run_mpy):
    flashimage.write_files(image, "vfs", {"cfg.bin": pattern(6000, 1),
                                          "keep.txt": b"unrelated file\n",
                                          "state.json": b'{"version": -1}'})
    out = device(run_mpy, "flash_powercut.py", image, tmp_path / "work.bin")
    assert out[-1] == "OK"
    summary = json.loads(out[-2])
    # Every operation of the rewrite was cut once; old before its commit, new after.
    assert summary["ops"] == len(summary["outcomes"]) >= 10
    assert summary["record_ops"] >= 50
    assert flashimage.read_file(image, "vfs", "cfg.bin") == pattern(6000, 1)  # base intact


def test_mount_data_formats_only_a_blank_partition(image, run_mpy):
    assert device(run_mpy, "flash_mount.py", image, "blank")[-1] == "OK"
    # What the device formatted, the host mounts with the same geometry.
    assert flashimage.read_file(image, "vfs", "hello.txt") == b"hello"
    assert flashimage.fs_info(image, "vfs")["disk_version"] == "{}.{}".format(
        *flashimage.board_config()["littlefs"]["disk_version"])
    assert flashimage.is_blank(image, "fctry")


def test_mount_data_never_formats_data_it_cannot_read(image, run_mpy):
    flashimage.write_partition(image, "vfs", os.urandom(9000))
    before = image.read_bytes()
    assert device(run_mpy, "flash_mount.py", image, "garbage")[-1] == "OK"
    assert image.read_bytes() == before


def test_reading_an_app_slot_is_fast(image, run_mpy):
    flashimage.write_files(image, "vfs", {"slots/a/app.bin": os.urandom(256 * 1024)})
    numbers = json.loads(device(run_mpy, "flash_perf.py", image, "slots/a/app.bin")[-1])
    print("256 KiB through littlefs:", numbers)
    assert numbers["bytes"] == 256 * 1024
    # Measured ~0.7 ms (read) and ~2 ms (read + sha256); generous for loaded machines.
    assert numbers["read_ms"] < 8 and numbers["read_sha256_ms"] < 12


def test_hal(tmp_path, run_mpy):
    run_dir = tmp_path / "dev1"
    run_dir.mkdir()
    flashimage.create_blank(run_dir / flashimage.image_name())
    (run_dir / "sim.json").write_text(json.dumps(
        {"unique_id": "a4cf12345678", "speed": 120, "outside_c": -2.0, "start_c": 21.5}))
    other = tmp_path / "dev2"
    other.mkdir()
    assert device(run_mpy, "hal_sim.py", run_dir, other)[-1] == "OK"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["led"]["pattern"] == "alert" and status["led"]["timings"] == [100, 100, 100, 700]
    assert status["relay"] == {"on": True, "switches": 1}
    assert not (run_dir / "button").exists()


def test_hal_reset_exits_with_the_restart_code(tmp_path, run_mpy):
    flashimage.create_blank(tmp_path / flashimage.image_name())
    result = run_mpy(DEVICE / "hal_reset.py", [str(tmp_path)])
    assert result.returncode == flashimage.board_config()["sim"]["reset_exit_code"] == 75
    assert "reset returned" not in result.stdout
