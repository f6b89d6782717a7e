"""ESP32 boards, flashing and Secure Boot v2 / eFuse tooling (espefuse --virt, no hardware)."""

import hashlib
import io
import json
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from host_tools import cli, esp
from host_tools.errors import DeviceError, KeyFileError, ToolError, UsageError, VerifyError
from host_tools.esp import partitions

REPO = Path(__file__).resolve().parents[2]
BOARDS = ("esp32", "esp32s3", "esp32c3")
TABLES = ("partitions.csv", "partitions-8MiB.csv")
MiB = 1 << 20


def run_cli(args, capsys, stdin=None, monkeypatch=None):
    """Run `iotctl args`; return (exit code, stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as exc:
        cli.main(list(map(str, args)))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def tool(*args):
    proc = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def efuse_summary(chip, virt, tmp_path):
    out = tmp_path / f"summary-{chip}.json"
    tool("espefuse", "--chip", chip, "--virt", "--path-efuse-file", virt, "summary",
         "--format", "json", "--file", out)
    return json.loads(out.read_text())


# --- boards and partition tables -------------------------------------------------------

@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("table", TABLES)
def test_partition_tables_fit_and_match_unix(board, table):
    cfg = json.loads((REPO / "boards" / board / "board.json").read_text())
    flash = {"partitions.csv": cfg["flash_size"]}.get(table) or \
        cfg["variants"]["8MB"]["flash_size"]
    capacity = cfg["slot_capacity"] if table == "partitions.csv" else \
        cfg["variants"]["8MB"]["slot_capacity"]
    parts = partitions.validate(partitions.load(REPO / "boards" / board / table), flash)
    unix = partitions.load(REPO / "boards" / "unix" / "partitions.csv")
    assert [p.name for p in parts] == [p.name for p in unix]
    assert max(p.end for p in parts) <= flash
    for slot in ("ota_0", "ota_1"):
        p = partitions.find(parts, slot)
        assert p.type == "app" and p.subtype == slot and p.size >= 1536 * 1024
    fctry, vfs = partitions.find(parts, "fctry"), partitions.find(parts, "vfs")
    assert (fctry.type, int(fctry.subtype, 0)) == ("data", 0x40)
    assert (vfs.type, vfs.subtype) == ("data", "fat")
    assert partitions.find(parts, "otadata").size == 0x2000  # the bootloader requires it
    # the app's ROMFS image in two equal regions (each a slot plus its signed prefix's
    # sectors), their swap partition, and room for state, outbox and temp files
    romfs, romfs_b = partitions.find(parts, "romfs"), partitions.find(parts, "romfs_b")
    assert (romfs.type, int(romfs.subtype, 0)) == ("data", 0x8f)  # what MicroPython maps
    assert romfs.size == romfs_b.size >= capacity + 3 * 4096
    assert vfs.size >= 256 * 1024


@pytest.mark.parametrize("board", BOARDS)
def test_board_json(board):
    cfg = esp.load_board(board)
    assert cfg["chip"] == board and cfg["board"] == board
    assert cfg["bootloader_offset"] == (0x1000 if board == "esp32" else 0x0)
    assert cfg["partition_table_offset"] == 0x8000
    # Secure Boot v2 on ESP32 (ECO3), ESP32-S3 and ESP32-C3 is RSA-3072 only.
    assert cfg["secure_boot"]["version"] == 2 and cfg["secure_boot"]["scheme"] == "rsa3072"
    assert cfg["data_partition"] == "vfs" and cfg["factory_partition"] == "fctry"
    pins = cfg["pins"]
    assert set(pins) == {"sensor_sda", "sensor_scl", "relay", "led", "button"}
    assert len(set(pins.values())) == len(pins)
    big = esp.load_board(board, "8MB")
    assert big["flash_size"] == 8 * MiB and big["partition_table"] == "partitions-8MiB.csv"
    with pytest.raises(UsageError):
        esp.load_board(board, "16MB")


def _parse_documented(blob):
    """Independent reader of ESP-IDF's binary partition table format."""
    entries, md5 = [], hashlib.md5()
    for pos in range(0, len(blob), 32):
        row = blob[pos:pos + 32]
        if row == b"\xFF" * 32:
            return entries
        if row[:2] == b"\xEB\xEB":
            assert row[2:16] == b"\xFF" * 14 and row[16:] == md5.digest()
            entries.append("md5")
            continue
        magic, ptype, subtype, offset, size, name, flags = struct.unpack("<2sBBLL16sL", row)
        assert magic == b"\xAA\x50"
        md5.update(row)
        entries.append((name.rstrip(b"\0").decode(), ptype, subtype, offset, size, flags))
    raise AssertionError("no end marker")


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("table", TABLES)
def test_binary_partition_table(board, table):
    parts = partitions.load(REPO / "boards" / board / table)
    blob = esp.partition_table_bin(parts)
    assert len(blob) == 0xC00
    rows = _parse_documented(blob)
    assert rows[-1] == "md5" and len(rows) == len(parts) + 1
    subtypes = {"nvs": (1, 0x02), "otadata": (1, 0x00), "fctry": (1, 0x40),
                "ota_0": (0, 0x10), "ota_1": (0, 0x11), "vfs": (1, 0x81),
                "romfs": (1, 0x8f), "romfs_b": (1, 0x41), "romfs_s": (1, 0x42),
                "marks": (1, 0x43)}
    for p, row in zip(parts, rows):
        # the factory record holds the device's private key: encrypted under flash encryption
        flags = 1 if p.name == "fctry" else 0
        assert row == (p.name, *subtypes[p.name], p.offset, p.size, flags)
    assert esp.parse_partition_table_bin(blob) == [
        partitions.Partition(p.name, p.type, p.subtype if p.name != "fctry" else "0x40",
                             p.offset, p.size, "encrypted" if p.name == "fctry" else "")
        for p in parts]


def test_binary_partition_table_flags_and_corruption():
    parts = [partitions.Partition("fctry", "data", "0x40", 0x11000, 0xF000, "encrypted"),
             partitions.Partition("ota_0", "app", "ota_0", 0x20000, 0x100000, "")]
    blob = esp.partition_table_bin(parts)
    assert _parse_documented(blob)[0][-1] == 1
    assert esp.parse_partition_table_bin(blob)[0].flags == "encrypted"
    bad = bytearray(blob)
    bad[8] ^= 1  # offset of the first entry
    with pytest.raises(UsageError, match="MD5"):
        esp.parse_partition_table_bin(bytes(bad))
    with pytest.raises(UsageError, match="flag"):
        esp.partition_table_bin([partitions.Partition("x", "data", "nvs", 0x9000, 0x1000, "odd")])


# --- flashing --------------------------------------------------------------------------

@pytest.fixture
def images(request, tmp_path):
    """Small images: a valid app image and bootloader for the test's `board` (esp32 if the
    test has none), and for every chip under "fw"/"bl"; fake factory and data blobs."""
    from tests.fakes.appimage import make_app_image, make_bootloader_image

    def blob(name, data):
        path = tmp_path / name
        path.write_bytes(data)
        return path
    callspec = getattr(request.node, "callspec", None)
    board = callspec.params.get("board", "esp32") if callspec else "esp32"
    fw = {c: blob(f"micropython-{c}.bin", make_app_image(c, "1.24.1", 300_000)) for c in BOARDS}
    bl = {c: blob(f"bootloader-{c}.bin", make_bootloader_image(c, 0x5000)) for c in BOARDS}
    return {"bootloader": bl[board], "firmware": fw[board], "fw": fw, "bl": bl,
            "factory": blob("fctry.img", hashlib.shake_256(b"fctry").digest(0xF000)),
            "data": blob("vfs.img", hashlib.shake_256(b"vfs").digest(64 * 1024))}


def _pairs(argv, start):
    args = argv[start:]
    return {int(args[i], 16): args[i + 1] for i in range(0, len(args), 2)}


EXPECTED = {  # board -> (bootloader offset, vfs offset in the 4 MiB table)
    "esp32": (0x1000, 0x3a8000), "esp32s3": (0x0, 0x3a8000), "esp32c3": (0x0, 0x3a8000)}


@pytest.mark.parametrize("board", BOARDS)
def test_flash_dry_run_argv(board, images, tmp_path, capsys):
    work = tmp_path / "work"
    code, out, _ = run_cli(["flash", "--board", board, "--port", "/dev/ttyUSB0",
                            "--firmware", images["firmware"], "--bootloader", images["bootloader"],
                            "--factory", images["factory"], "--data", images["data"],
                            "--dry-run", "--workdir", work, "--json"], capsys)
    assert code == 0
    job = json.loads(out)
    argv = job["argv"]
    assert argv[:3] == [sys.executable, "-m", "esptool"]
    assert argv[argv.index("--chip") + 1] == board
    assert argv[argv.index("--port") + 1] == "/dev/ttyUSB0"
    start = argv.index("write-flash")
    assert argv[start + 1:start + 7] == ["--flash-mode", "keep", "--flash-freq", "keep",
                                         "--flash-size", "keep"]
    bl, vfs = EXPECTED[board]
    assert _pairs(argv, start + 7) == {
        bl: str(images["bootloader"]), 0x8000: str(work / "partition-table.bin"),
        0xF000: str(work / "ota_data_initial.bin"), 0x11000: str(images["factory"]),
        0x20000: str(images["firmware"]), vfs: str(images["data"]),
        0x3FE000: str(work / "marks_initial.bin")}
    assert not job["ran"]
    table = esp.parse_partition_table_bin((work / "partition-table.bin").read_bytes())
    assert [(p.name, p.offset, p.size) for p in table] == [
        (p.name, p.offset, p.size) for p in esp.load_board(board)["parts"]]
    assert (work / "ota_data_initial.bin").read_bytes() == b"\xFF" * 0x2000
    assert (work / "marks_initial.bin").read_bytes() == b"\xFF" * 0x2000  # no owner mark
    # the text form prints the same command
    code, out, _ = run_cli(["flash", "--board", board, "--firmware", images["firmware"],
                            "--dry-run", "--workdir", work], capsys)
    assert code == 0 and out.splitlines()[0].startswith(f"{sys.executable} -m esptool --chip "
                                                        f"{board} ")


def test_flash_library_8mb_and_limits(images, tmp_path):
    job = esp.flash("esp32s3", images["fw"]["esp32s3"], data=images["data"], flash_size="8MB",
                    dry_run=True, workdir=tmp_path / "w")
    pairs = _pairs(job.argv, job.argv.index("write-flash") + 7)
    assert pairs[0x20000] == str(images["fw"]["esp32s3"])
    assert pairs[0x629000] == str(images["data"])  # vfs, after the ROMFS regions
    assert "--port" not in job.argv and not job.ran
    huge = tmp_path / "huge.bin"
    huge.write_bytes(b"\0" * (0x180000 + 1))
    with pytest.raises(UsageError, match="fit"):
        esp.flash("esp32", huge, dry_run=True, workdir=tmp_path / "w")
    with pytest.raises(UsageError, match="fit"):  # bootloader would overlap 0x8000
        esp.flash("esp32", images["firmware"], bootloader=images["factory"], dry_run=True,
                  workdir=tmp_path / "w")
    with pytest.raises(UsageError, match="inputs"):
        esp.flash("esp32", images["firmware"], merge_out=images["firmware"])
    with pytest.raises(UsageError, match="not found"):
        esp.flash("esp32", tmp_path / "missing.bin", dry_run=True, workdir=tmp_path / "w")


@pytest.mark.parametrize("board", BOARDS)
def test_merge_writes_production_image(board, images, tmp_path, capsys):
    out = tmp_path / f"{board}-production.bin"
    code, text, _ = run_cli(["flash", "--board", board, "--firmware", images["firmware"],
                             "--bootloader", images["bootloader"], "--factory",
                             images["factory"], "--data", images["data"], "--merge", "-o", out,
                             "--json"], capsys)
    assert code == 0, text
    job = json.loads(text)
    assert job["ran"] and job["argv"][job["argv"].index("--chip") + 1] == board
    assert "merge-bin" in job["argv"]
    merged = out.read_bytes()
    assert len(merged) == 4 * MiB  # padded to the flash size, flashable at 0x0
    bl, vfs = EXPECTED[board]
    for offset, src in ((bl, images["bootloader"]), (0x11000, images["factory"]),
                        (0x20000, images["firmware"]), (vfs, images["data"])):
        data = src.read_bytes()
        assert merged[offset:offset + len(data)] == data
    parts = esp.load_board(board)["parts"]
    assert merged[0x8000:0x8C00] == esp.partition_table_bin(parts)
    assert esp.parse_partition_table_bin(merged[0x8000:0x9000])[3].name == "ota_0"
    assert merged[0xF000:0x11000] == b"\xFF" * 0x2000  # blank otadata: boot ota_0
    end = 0x20000 + images["firmware"].stat().st_size
    assert merged[end:0x1A0000] == b"\xFF" * (0x1A0000 - end)


def test_merge_with_host_encryption(images, tmp_path):
    key = tmp_path / "fe.bin"
    key.write_bytes(bytes(range(32)))
    out = tmp_path / "enc.bin"
    job = esp.flash("esp32c3", images["fw"]["esp32c3"], factory=images["factory"],
                    bootloader=images["bl"]["esp32c3"], merge_out=out, encrypt_key=key,
                    stream=lambda t: None)
    encrypted = {argv[argv.index("--address") + 1] for argv in job.prepare}
    assert encrypted == {"0x0", "0x8000", "0xf000", "0x20000", "0x11000"}  # and fctry, flagged
    assert all("--aes-xts" in argv for argv in job.prepare)
    merged = out.read_bytes()
    fw = images["fw"]["esp32c3"].read_bytes()
    factory = images["factory"].read_bytes()
    assert merged[0x11000:0x11000 + 64] != factory[:64]  # the private key is not in clear
    assert merged[0x20000:0x20000 + 64] != fw[:64]
    region = tmp_path / "region.bin"
    region.write_bytes(merged[0x20000:0x20000 + len(fw) + (-len(fw) % 32)])
    plain = tmp_path / "plain.bin"
    tool("espsecure", "decrypt-flash-data", "--aes-xts", "--keyfile", key, "--address",
         "0x20000", "--output", plain, region)
    assert plain.read_bytes()[:len(fw)] == fw


# --- Secure Boot v2 and eFuses ---------------------------------------------------------

@pytest.mark.parametrize("chip", BOARDS)
def test_plan_lists_steps_and_touches_nothing(chip, tmp_path, capsys):
    before = sorted(tmp_path.rglob("*"))
    virt, keys = tmp_path / "efuses.bin", tmp_path / "keys"
    code, out, _ = run_cli(["secure-boot", "plan", "--board", chip, "--virt", virt,
                            "--keys", keys], capsys)
    assert code == 0
    assert sorted(tmp_path.rglob("*")) == before  # no keys, no eFuse file
    assert "generate-signing-key --version 2 --scheme rsa3072" in out
    assert out.count("-m espefuse --chip " + chip) == 8
    code, out, _ = run_cli(["secure-boot", "plan", "--board", chip, "--virt", virt,
                            "--keys", keys, "--json"], capsys)
    steps = json.loads(out)["steps"]
    commands = [s["argv"][s["argv"].index("--do-not-confirm") + 1:] for s in steps]
    verbs = [c[0] for c in commands]
    assert verbs == ["burn-key", "burn-efuse", "burn-efuse", "write-protect-efuse",
                     "burn-key", "burn-efuse", "write-protect-efuse", "burn-efuse"]
    flat = [" ".join(c) for c in commands]
    if chip == "esp32":
        assert flat[0].startswith("burn-key flash_encryption")
        assert flat[4].startswith("burn-key secure_boot_v2")
        assert flat[5] == "burn-efuse ABS_DONE_1 1"
        assert "JTAG_DISABLE 1" in flat[2]
        assert flat[-1] == "burn-efuse UART_DOWNLOAD_DIS 1"
    else:
        assert flat[0].startswith("burn-key BLOCK_KEY0") and flat[0].endswith("XTS_AES_128_KEY")
        assert flat[1] == "burn-efuse SPI_BOOT_CRYPT_CNT 7"
        assert flat[4].startswith("burn-key BLOCK_KEY1") and flat[4].endswith(
            "SECURE_BOOT_DIGEST0")
        assert flat[5].startswith("burn-efuse SECURE_BOOT_EN 1")
        assert "DIS_PAD_JTAG 1" in flat[2] and "DIS_USB_JTAG 1" in flat[2]
        assert flat[-1] == "burn-efuse ENABLE_SECURITY_DOWNLOAD 1"
    assert flat[6] == "write-protect-efuse RD_DIS"
    assert all(s["argv"][s["argv"].index("--path-efuse-file") + 1] == str(virt) for s in steps)


def _blank_chip(chip, virt):
    """A blank virtual chip; ESP32 needs rev v3.0 (ECO3) for Secure Boot v2."""
    if chip == "esp32":
        tool("espefuse", "--chip", "esp32", "--virt", "--path-efuse-file", virt,
             "--do-not-confirm", "burn-efuse", "CHIP_VER_REV1", "1", "CHIP_VER_REV2", "1")


@pytest.mark.parametrize("chip", BOARDS)
def test_apply_virt_end_to_end(chip, tmp_path, capsys):
    virt, keys = tmp_path / f"{chip}-efuses.bin", tmp_path / "keys"
    _blank_chip(chip, virt)
    code, out, err = run_cli(["secure-boot", "apply", "--board", chip, "--virt", virt,
                              "--keys", keys, "--yes", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    paths = esp.key_paths(keys)
    assert stat.S_IMODE(os.stat(paths["signing_key"]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700
    assert not Path(paths["fe_key"]).exists() and result["fe_key_deleted"]

    # the digest of the public key, computed independently of the tool's own files
    digest_file = tmp_path / "digest.bin"
    tool("espsecure", "digest-sbv2-public-key", "--keyfile", paths["public_key"],
         "--output", digest_file)
    digest = digest_file.read_bytes()
    assert result["digest"] == digest.hex()

    ef = efuse_summary(chip, virt, tmp_path)
    if chip == "esp32":
        assert ef["ABS_DONE_1"]["value"] is True
        assert bytes.fromhex(ef["BLOCK2"]["value"]) == digest
        assert not ef["BLOCK2"]["writeable"] and ef["BLOCK2"]["readable"]
        assert not ef["BLOCK1"]["readable"] and not ef["BLOCK1"]["writeable"]
        assert ef["FLASH_CRYPT_CNT"]["value"] == 127
        assert ef["JTAG_DISABLE"]["value"] is True
        assert ef["UART_DOWNLOAD_DIS"]["value"] is True
    else:
        assert ef["SECURE_BOOT_EN"]["value"] is True
        assert ef["KEY_PURPOSE_1"]["value"] == "SECURE_BOOT_DIGEST0"
        assert bytes.fromhex(ef["BLOCK_KEY1"]["value"]) == digest
        assert ef["KEY_PURPOSE_0"]["value"] == "XTS_AES_128_KEY"
        assert not ef["BLOCK_KEY0"]["readable"] and not ef["BLOCK_KEY0"]["writeable"]
        assert int(ef["SPI_BOOT_CRYPT_CNT"]["raw_value"], 16) == 7
        assert ef["DIS_PAD_JTAG"]["value"] and ef["DIS_USB_JTAG"]["value"]
        assert ef["SECURE_BOOT_KEY_REVOKE1"]["value"] and ef["SECURE_BOOT_KEY_REVOKE2"]["value"]
        assert ef["ENABLE_SECURITY_DOWNLOAD"]["value"] is True
    assert not ef["RD_DIS"]["writeable"]

    # applying again is refused before anything is burnt
    burnt = virt.read_bytes()
    code, _, err = run_cli(["secure-boot", "apply", "--board", chip, "--virt", virt,
                            "--keys", keys, "--yes"], capsys)
    assert code == 5 and "secure boot is already enabled" in err and "Nothing was burnt" in err
    assert virt.read_bytes() == burnt


def test_apply_wrong_word_aborts_and_burns_nothing(tmp_path, capsys, monkeypatch):
    virt, keys = tmp_path / "efuses.bin", tmp_path / "keys"
    efuse_summary("esp32c3", virt, tmp_path)  # creates the blank virtual chip
    blank = virt.read_bytes()
    code, out, err = run_cli(["secure-boot", "apply", "--board", "esp32c3", "--virt", virt,
                              "--keys", keys], capsys, stdin="burn\n", monkeypatch=monkeypatch)
    assert code == 130 and "nothing was burnt" in err
    assert "Type BURN" in out and "ENABLE_SECURITY_DOWNLOAD" in out
    assert virt.read_bytes() == blank and not keys.exists()
    # the library refuses an unconfirmed apply too
    with pytest.raises(UsageError, match="nothing was burnt"):
        esp.apply_secure_boot("esp32c3", keys, virt=virt, confirm=lambda plan: False)
    assert virt.read_bytes() == blank and not keys.exists()


def test_apply_refuses_esp32_before_rev3_and_missing_keys_on_real_chip(tmp_path):
    virt = tmp_path / "rev0.bin"
    with pytest.raises(DeviceError, match="needs v3.0"):
        esp.apply_secure_boot("esp32", tmp_path / "keys", virt=virt)
    assert not (tmp_path / "keys").exists()
    plan = esp.plan_secure_boot("esp32s3", tmp_path / "keys", port="/dev/ttyUSB0")
    assert len(plan["missing"]) == 2  # a real chip never gets freshly invented keys
    assert plan["steps"][0].argv[plan["steps"][0].argv.index("--port") + 1] == "/dev/ttyUSB0"


# --- keys and image signing ------------------------------------------------------------

def test_sign_and_verify_images(tmp_path, capsys):
    key = Path(esp.generate_signing_key(tmp_path / "keys" / "sb.pem"))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        esp.generate_signing_key(key)
    fe = Path(esp.generate_flash_encryption_key(tmp_path / "keys" / "fe.bin"))
    assert len(fe.read_bytes()) == 32 and stat.S_IMODE(fe.stat().st_mode) == 0o600

    image = tmp_path / "app.bin"
    image.write_bytes(hashlib.shake_256(b"app").digest(10_000))
    signed = tmp_path / "app-signed.bin"
    with pytest.raises(UsageError, match="input"):
        esp.sign_image(image, key, image)
    with pytest.raises(KeyFileError):
        esp.sign_image(image, tmp_path / "nokey.pem", signed)
    esp.sign_image(image, key, signed)
    data = signed.read_bytes()
    assert len(data) % 4096 == 0 and data[:10_000] == image.read_bytes()
    pub = tmp_path / "pub.pem"
    tool("espsecure", "extract-public-key", "--version", "2", "--keyfile", key, pub)
    assert esp.verify_image(signed, key) == "OK" and esp.verify_image(signed, pub) == "OK"

    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    with pytest.raises(VerifyError) as exc:
        esp.verify_image(tampered, pub)
    assert exc.value.verdict == "INVALID_HASH"
    other = esp.generate_signing_key(tmp_path / "keys" / "other.pem")
    with pytest.raises(VerifyError) as exc:
        esp.verify_image(signed, other)
    assert exc.value.verdict == "KEY_MISMATCH"
    with pytest.raises(VerifyError) as exc:
        esp.verify_image(image, pub)
    assert exc.value.verdict == "NOT_SIGNED"
    with pytest.raises(KeyFileError):
        esp.verify_image(signed, tmp_path / "nokey.pem")

    code, out, _ = run_cli(["secure-boot", "verify", signed, "--key", pub], capsys)
    assert code == 0 and out.strip().endswith("OK")
    code, _, err = run_cli(["secure-boot", "verify", tampered, "--key", pub], capsys)
    assert code == 4 and "INVALID_HASH" in err
    code, _, err = run_cli(["secure-boot", "sign", image, "--key", key, "-o", image], capsys)
    assert code == 2


def test_tool_failure_maps_to_tool_error(tmp_path):
    with pytest.raises(ToolError, match="espsecure failed"):
        esp.run_tool(esp.tool_argv("espsecure", "digest-sbv2-public-key", "--keyfile",
                                   tmp_path / "nope.pem", "--output", tmp_path / "d.bin"))


def test_tool_failure_carries_the_tools_own_exception(tmp_path):
    """run_tool's message is the exception the tool raised through its Python API (here
    espsecure's FatalError for a key it cannot use), passed back by the child process, not
    a line picked out of its printed output."""
    import espsecure
    from esptool.util import FatalError

    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    with open(bad, "rb") as f, pytest.raises(FatalError) as direct:
        espsecure.digest_sbv2_public_key(f, str(tmp_path / "direct.bin"))
    with pytest.raises(ToolError) as exc:
        esp.run_tool(esp.tool_argv("espsecure", "digest-sbv2-public-key", "--keyfile", bad,
                                   "--output", tmp_path / "d.bin"))
    assert str(exc.value) == f"espsecure failed (exit 2): {' '.join(str(direct.value).split())}"
    # a bad argument: click's own error for it, as `espsecure --help` would explain it
    with pytest.raises(ToolError, match="No such command 'no-such-command'"):
        esp.run_tool(esp.tool_argv("espsecure", "no-such-command"))
    with pytest.raises(UsageError):  # only the three tools run through it
        esp.run_tool([sys.executable, "-m", "pip", "list"])


def test_tool_stopped_at_its_timeout_is_unreachable(tmp_path):
    """A tool still running at `timeout` is killed: Unreachable, and nothing is left running.
    A pseudo-terminal that never answers stands in for a board that does not sync."""
    import os
    import pty
    import time

    from host_tools.errors import Unreachable

    leader, follower = pty.openpty()
    try:
        start = time.monotonic()
        with pytest.raises(Unreachable, match="did not finish within 2 s"):
            esp.run_tool(esp.tool_argv("esptool", "--chip", "esp32", "--port",
                                       os.ttyname(follower), "--connect-attempts", "0",
                                       "read-mac"), timeout=2)
        assert time.monotonic() - start < 15
    finally:
        os.close(leader)
        os.close(follower)


# --- command surface -------------------------------------------------------------------

@pytest.mark.parametrize("args", [["flash"], ["secure-boot"], ["secure-boot", "plan"],
                                  ["secure-boot", "apply"], ["secure-boot", "keys"],
                                  ["secure-boot", "sign"], ["secure-boot", "verify"]])
def test_help(args, capsys):
    code, out, _ = run_cli([*args, "--help"], capsys)
    assert code == 0 and "Usage:" in out


def test_command_list():
    from host_tools.cli import esp as cmd_esp
    assert [c.name for c in cmd_esp.COMMANDS] == ["flash", "secure-boot"]
    assert sorted(cmd_esp.secure_boot.commands) == ["apply", "keys", "plan", "sign", "verify"]
