"""The real boards (esp32, esp32s3, esp32c3): partition tables, flash images checked with
`esptool image-info`, the HAL and the power-on sequence on the unix port with a fake `machine`,
the frozen-module manifests and MicroPython board definitions, and tools/hwtest.py's plan."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from host_tools import bundle, esp, flashimage, keys, mpy
from host_tools.esp import partitions
from tests.fakes.appimage import make_app_image, make_bootloader_image

REPO = mpy.REPO
BOARDS = ("esp32", "esp32s3", "esp32c3")
TABLES = {"partitions.csv": None, "partitions-8MiB.csv": "8MB"}
DEVICE = REPO / "tests" / "device"
FAKES = REPO / "tests" / "fakes"
COMMON = REPO / "boards" / "common"
KiB = 1024
# What a firmware image may occupy when board.json does not say ("firmware_size"): the
# 1.5 MiB MicroPython gives its own OTA builds (ports/esp32/partitions-4MiB-ota.csv).
FIRMWARE_SIZE = 0x180000
DATA_ROOM = 256 * KiB  # beyond two app slots: state, settings, outbox, firmware records


def board_cfg(board, table="partitions.csv"):
    return esp.load_board(board, TABLES[table])


def device_path(board):
    return [FAKES, REPO / "boards" / board, COMMON]


# --- partition tables -------------------------------------------------------------------

@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("table", TABLES)
def test_partition_table_holds_firmware_slots_and_data(board, table):
    cfg = board_cfg(board, table)  # parses and validates: no overlap, alignment, fits flash
    parts = cfg["parts"]
    assert cfg["partition_table"] == table
    assert partitions.validate(parts, cfg["flash_size"]) == parts
    by = {p.name: p for p in parts}
    assert list(by) == ["nvs", "otadata", "fctry", "ota_0", "ota_1", "romfs", "romfs_b",
                        "romfs_s", "vfs", "marks"]
    # no gaps that waste flash, nothing before the partition table's sector
    ordered = sorted(parts, key=lambda p: p.offset)
    assert ordered[0].offset >= partitions.TABLE_OFFSET + partitions.TABLE_SIZE
    assert ordered[-1].end == cfg["flash_size"]
    # otadata: the two 4 KiB sectors the ESP-IDF bootloader alternates between
    assert (by["otadata"].type, by["otadata"].subtype, by["otadata"].size) == ("data", "ota",
                                                                               0x2000)
    # two equal OTA app slots, 64 KiB aligned, each holding a whole MicroPython image
    slots = [by["ota_0"], by["ota_1"]]
    assert [(p.type, p.subtype) for p in slots] == [("app", "ota_0"), ("app", "ota_1")]
    assert slots[0].size == slots[1].size
    assert all(p.offset % partitions.APP_ALIGN == 0 for p in slots)
    assert slots[0].size >= cfg.get("firmware_size", FIRMWARE_SIZE)
    # factory data: a littlefs needs at least two blocks; the app's ROMFS image in two equal
    # regions, each a slot plus its signed prefix's sectors (the one MicroPython maps is
    # labelled romfs, subtype 0x8f), a swap partition (scratch + log); data: room
    assert by["fctry"].size >= 2 * cfg["block_size"]
    assert (by["romfs"].type, by["romfs"].subtype) == ("data", "0x8f")
    assert by["romfs"].size == by["romfs_b"].size >= cfg["slot_capacity"] + 3 * 4096
    assert by["romfs"].offset % 0x10000 == 0  # a whole MMU page for the mapping
    log_cells = (by["romfs_s"].size - 4096) // 8
    assert log_cells >= 3 * (by["romfs"].size // 4096) + 2 + 64
    assert by["vfs"].size >= DATA_ROOM
    # the owner mark (bootloader/marks.py): two raw sectors, outside littlefs, unencrypted
    assert (by["marks"].type, by["marks"].subtype, by["marks"].size, by["marks"].flags) == \
        ("data", "0x43", 0x2000, "")
    assert (cfg["data_partition"], cfg["factory_partition"]) == ("vfs", "fctry")


def test_validation_catches_broken_tables():
    good = partitions.load(REPO / "boards" / "esp32" / "partitions.csv")
    flash = 4 << 20
    moved = [p if p.name != "ota_1" else partitions.Partition("ota_1", "app", "ota_1",
                                                              0x190000, 0x180000)
             for p in good]
    with pytest.raises(Exception, match="overlaps"):
        partitions.validate(moved, flash)
    unaligned = [p if p.name != "ota_0" else partitions.Partition("ota_0", "app", "ota_0",
                                                                  0x21000, 0x170000)
                 for p in good]
    with pytest.raises(Exception, match="not aligned"):
        partitions.validate(unaligned, flash)
    with pytest.raises(Exception, match="past the"):
        partitions.validate(good, 2 << 20)


@pytest.mark.parametrize("board", BOARDS)
def test_flash_image_checked_with_esptool_image_info(board, tmp_path):
    """A merged production image in the board's layout: the app at ota_0 passes esptool's
    image-info (chip id, checksum, SHA-256, app descriptor), the table and otadata are right."""
    cfg = board_cfg(board)
    app = tmp_path / "micropython.bin"
    app.write_bytes(make_app_image(board, "1.24.1", 30000, irom=True))
    merged = tmp_path / "image.bin"
    boot = tmp_path / "bootloader.bin"
    boot.write_bytes(make_bootloader_image(board))
    esp.flash(board, app, bootloader=boot, merge_out=merged)
    data = merged.read_bytes()
    assert len(data) == cfg["flash_size"]
    ota0 = partitions.find(cfg["parts"], "ota_0")
    at = data[ota0.offset:ota0.offset + len(app.read_bytes())]
    assert at == app.read_bytes()
    extracted = tmp_path / "ota_0.bin"
    extracted.write_bytes(at)
    proc = subprocess.run([sys.executable, "-m", "esptool", "--chip", board, "image-info",
                           extracted], capture_output=True, text=True)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    chip_id = {"esp32": 0, "esp32s3": 9, "esp32c3": 5}[board]
    assert re.search(rf"Chip ID: {chip_id}\b", out), out
    assert re.search(r"Checksum: 0x[0-9a-f]+ \(valid\)", out), out
    assert re.search(r"Validation hash: [0-9a-f]{64} \(valid\)", out), out
    assert "Project name: micropython" in out and "App version: 1.24.1" in out
    table = esp.parse_partition_table_bin(data[0x8000:0x8000 + 0xC00])
    assert [(p.name, p.offset, p.size) for p in table] == \
        [(p.name, p.offset, p.size) for p in cfg["parts"]]
    otadata = partitions.find(cfg["parts"], "otadata")
    assert data[otadata.offset:otadata.end] == b"\xff" * otadata.size  # bootloader starts ota_0


# --- the HAL and the power-on sequence on the unix port ----------------------------------

@pytest.mark.parametrize("board", BOARDS)
def test_hal_on_unix_with_fake_machine(board):
    proc = mpy.run(DEVICE / "board_hal.py", [board, REPO / "boards" / board / "board.json"],
                   extra_path=device_path(board))
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1:] == ["OK"], \
        proc.stdout[-2000:] + proc.stderr


def test_board_power_on_sequence(tmp_path):
    k = tmp_path / "keys"
    keys.init(k)
    flash = tmp_path / "flash.bin"
    flashimage.create_blank(flash, board="unix")
    flashimage.write_partition(flash, "ota_0", make_app_image("esp32", "1.0.0", 12000),
                               board="unix")
    flashimage.write_files(flash, "fctry", {
        "anchors.json": json.dumps(keys.anchors(k)).encode(),
        "identity.json": json.dumps({"device_id": "th-test", "product": "iot-thermostat",
                                     "model": "TH-1", "board": "esp32"}).encode()})
    app = (b"import os\n\n\ndef main(boot):\n    try:\n        os.stat('/data/selftest-fails')\n"
           b"        ok = False\n    except OSError:\n        ok = True\n    if boot.trial:\n"
           b"        if ok:\n            boot.confirm()\n        else:\n"
           b"            boot.rollback('self-test failed (test)')\n"
           b"    return 'ran ' + boot.version\n")

    def app_bundle(version, sec, assets=0):
        out = tmp_path / f"app-{version}.bnd"
        files = {"app.py": app}
        if assets:  # a release large enough that its pulled download is cut after syncs
            files["static/assets.bin"] = os.urandom(assets)
        bundle.build(k, ["esp32"], version, sec, out=out, files=files,
                     product="iot-thermostat", compile=False)
        return str(out)

    def fw_bundle(version, sec):
        from host_tools.esp import micropython_image

        img = tmp_path / f"mp-{version}.bin"
        img.write_bytes(make_app_image("esp32", version, 12000))
        out = tmp_path / f"fw-{version}.bnd"
        micropython_image.build(img, k, "esp32", version, sec, out=out)
        return str(out)

    cases = {"bundles": {"app1": app_bundle("1.0.0", 1), "app2": app_bundle("1.1.0", 2, 200_000),
                         "fw2": fw_bundle("2.0.0", 2), "fw3": fw_bundle("3.0.0", 3)},
             "other_root": os.urandom(32).hex(), "root": keys.load_info(k)["root_public"]}
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps(cases))
    proc = mpy.run(DEVICE / "board_main.py", [flash, REPO / "boards" / "esp32" / "board.json",
                                              spec], extra_path=device_path("esp32"), timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1:] == ["OK"], \
        proc.stdout[-3000:] + proc.stderr


# --- frozen modules and the MicroPython board definitions --------------------------------

class ManifestRecorder:
    """The part of MicroPython's tools/manifestfile.py API a manifest uses, recording what
    would be frozen (target name -> source path). Runs each manifest from its own folder."""

    def __init__(self, port_dir):
        self.vars = {"PORT_DIR": str(port_dir), "MPY_DIR": str(port_dir)}
        self.frozen = {}
        self.included = []

    def _path(self, path):
        for name, value in self.vars.items():
            path = path.replace(f"$({name})", value)
        return os.path.abspath(path)

    def include(self, path, **kwargs):
        path = self._path(path)
        if os.path.isdir(path):
            path = os.path.join(path, "manifest.py")
        self.included.append(path)
        prev = os.getcwd()
        os.chdir(os.path.dirname(path))
        try:
            options = type("Options", (), {})()
            options.defaults = lambda **d: [setattr(options, k, kwargs.get(k, v))
                                            for k, v in d.items()]
            for k, v in kwargs.items():
                setattr(options, k, v)
            exec(Path(path).read_text(), {"include": self.include, "module": self.module,
                                          "options": options, "freeze": self.freeze,
                                          "require": lambda *a, **k: None,
                                          "package": lambda *a, **k: None})
        finally:
            os.chdir(prev)

    def module(self, name, base_path="."):
        src = os.path.join(self._path(base_path), name)
        assert os.path.isfile(src), src
        assert name not in self.frozen, f"{name} frozen twice"
        self.frozen[name] = src

    def freeze(self, path, script=None):
        self.frozen[f"<{self._path(path)}>"] = path


@pytest.mark.parametrize("board", BOARDS)
def test_manifest_freezes_boot_stage_hal_entry_and_anchors(board, tmp_path, monkeypatch):
    port = tmp_path / "ports" / "esp32"
    (port / "boards").mkdir(parents=True)
    (port / "boards" / "manifest.py").write_text("freeze('$(PORT_DIR)/modules')\n")
    out = tmp_path / "frozen"
    monkeypatch.setenv("IOT_FROZEN_DIR", str(out))
    monkeypatch.delenv("IOT_KEYS", raising=False)
    rec = ManifestRecorder(port)
    rec.include(str(REPO / "boards" / board / "manifest.py"))
    assert rec.included[1] == str(port / "boards" / "manifest.py")  # the port's own first
    boot_stage = {p.name for p in (REPO / "bootloader").glob("*.py")}
    assert {"bundle.py", "bootstage.py", "fwupdate.py", "ed25519.py"} <= boot_stage
    want = boot_stage | {"esp32hal.py", "esp32board.py", "main.py", "boot.py", "hal.py",
                         "boardcfg.py"}
    assert set(rec.frozen) - {f"<{port}/modules>"} == want
    assert rec.frozen["hal.py"] == str(REPO / "boards" / board / "hal.py")
    assert rec.frozen["main.py"] == str(COMMON / "main.py")
    ns = {}
    exec((out / "boardcfg.py").read_text(), ns)
    assert ns["CONFIG"] == json.loads((REPO / "boards" / board / "board.json").read_text())
    # Production: IOT_KEYS freezes the root public key (never a private key).
    k = tmp_path / "keys"
    keys.init(k)
    monkeypatch.setenv("IOT_KEYS", str(k))
    monkeypatch.setenv("IOT_KEY_FLOOR", "3")
    rec = ManifestRecorder(port)
    rec.include(str(REPO / "boards" / board / "manifest.py"))
    assert set(rec.frozen) - {f"<{port}/modules>"} == want | {"trust_anchors.py"}
    text = (out / "trust_anchors.py").read_text()
    ns = {}
    exec(text, ns)
    assert ns["ANCHORS"] == {"roots": [{"alg": "ed25519",
                                        "key": keys.load_info(k)["root_public"]}],
                             "key_floor": 3}
    assert "PRIVATE" not in text and len(text) < 400
    # ... and a development build afterwards does not pick the anchors up again.
    monkeypatch.delenv("IOT_KEYS")
    rec = ManifestRecorder(port)
    rec.include(str(REPO / "boards" / board / "manifest.py"))
    assert "trust_anchors.py" not in rec.frozen and not (out / "trust_anchors.py").exists()


@pytest.mark.parametrize("board", BOARDS)
def test_micropython_board_definition(board):
    d = REPO / "boards" / board
    cmake = (d / "mpconfigboard.cmake").read_text()
    assert f"set(IDF_TARGET {board})" in cmake and "../common/mpboard.cmake" in cmake
    header = (d / "mpconfigboard.h").read_text()
    assert "MICROPY_HW_BOARD_NAME" in header and "MICROPY_PY_BLUETOOTH                (0)" in \
        header
    # The sealed production image has no REPL on any console.
    sealed = header[header.index("#if defined(IOT_SEALED) && IOT_SEALED"):]
    sealed = sealed[:sealed.index("#e")]
    assert "MICROPY_HW_ENABLE_UART_REPL         (0)" in sealed
    if board != "esp32":  # native USB consoles
        assert "MICROPY_HW_ESP_USB_SERIAL_JTAG      (0)" in sealed
    common = (COMMON / "mpboard.cmake").read_text()
    assert "list(APPEND MICROPY_DEF_BOARD IOT_SEALED=1)" in common
    assert "partitions.csv" in common and "partitions-8MiB.csv" in common
    assert "MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py" in common
    assert "CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y" in (COMMON / "sdkconfig.iot").read_text()
    prod = (COMMON / "sdkconfig.production").read_text()
    assert "CONFIG_SECURE_BOOT_V2_ENABLED=y" in prod
    assert "CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE=y" in prod
    assert "CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK=y" in prod  # the floor bound to the eFuse
    # hal.py and the frozen entry points are device code: they compile for the board's arch
    for path in (d / "hal.py", COMMON / "esp32hal.py", COMMON / "esp32board.py",
                 COMMON / "main.py", COMMON / "boot.py"):
        assert mpy.compile_source(path.read_bytes(), path.name, mpy.board_arch(board))


# --- tools/hwtest.py ---------------------------------------------------------------------

def test_hwtest_dry_run_prints_the_plan(tmp_path):
    fw = tmp_path / "micropython.bin"
    fw.write_bytes(make_app_image("esp32s3", "1.24.1", 20000))
    proc = subprocess.run([sys.executable, REPO / "tools" / "hwtest.py", "--port",
                           "/dev/ttyUSB7", "--board", "esp32s3", "--firmware", fw, "--keys",
                           tmp_path / "keys", "--workdir", tmp_path / "hw", "--dry-run"],
                          capture_output=True, text=True, cwd=REPO)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    steps = re.findall(r"^(\d+)\. (\w+):", out, re.M)
    assert [s for _, s in steps] == ["flash", "provision", "install", "boot", "push", "tamper",
                                     "rollback"]
    assert "esptool --chip esp32s3 --port /dev/ttyUSB7" in out and "erase-flash" in out
    assert "iotctl flash --board esp32s3 --port /dev/ttyUSB7 --firmware" in out
    assert "iotctl provision --keys" in out and "--port /dev/ttyUSB7" in out
    assert "iotctl push" in out and "expect: rolled_back" in out
    assert "dry run: nothing was run" in out
    assert not (tmp_path / "hw").exists()  # a dry run writes nothing
    # A production build: the REPL is closed after provisioning, and the plan checks that.
    proc = subprocess.run([sys.executable, REPO / "tools" / "hwtest.py", "--port",
                           "/dev/ttyUSB7", "--board", "esp32s3", "--firmware", fw, "--keys",
                           tmp_path / "keys", "--workdir", tmp_path / "hw", "--dry-run",
                           "--production"], capture_output=True, text=True, cwd=REPO)
    steps = re.findall(r"^(\d+)\. (\w+):", proc.stdout, re.M)
    assert [s for _, s in steps] == ["flash", "provision", "install", "boot", "push", "console",
                                     "rollback"], proc.stdout + proc.stderr
    assert "expect: refused" in proc.stdout


def test_hwtest_refuses_missing_inputs(tmp_path):
    proc = subprocess.run([sys.executable, REPO / "tools" / "hwtest.py", "--port", "/dev/x",
                           "--board", "esp32", "--firmware", tmp_path / "none.bin", "--keys",
                           tmp_path / "keys"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "none.bin" in proc.stdout + proc.stderr


def test_hwtest_reports_fail_with_the_reason_and_stops(tmp_path):
    from host_tools import ca

    k = tmp_path / "keys"
    keys.init(k)
    ca.init(k)
    fw = tmp_path / "micropython.bin"
    fw.write_bytes(make_app_image("esp32", "1.24.1", 20000))
    (tmp_path / "bootloader.bin").write_bytes(b"\xe9" + bytes(4095))
    proc = subprocess.run([sys.executable, REPO / "tools" / "hwtest.py", "--port",
                           tmp_path / "no-such-port", "--board", "esp32", "--firmware", fw,
                           "--keys", k, "--workdir", tmp_path / "hw"],
                          capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "IOT_WIFI_SSID": "lab", "IOT_WIFI_PASSWORD": "pw"})
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert lines[0].startswith("FAIL 1. flash: esptool failed"), lines
    assert lines[-1] == "hwtest: 1 step(s) failed" and len(lines) == 2  # stopped at the FAIL
