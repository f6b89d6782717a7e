"""Firmware updates: `iotctl sign --kind firmware`, and the device's writer through the fake
esp32.Partition (install, trial, confirm, rollback, refusals, tamper matrix, power loss)."""

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from host_tools import bundle, cli, esp, flashimage, keys, mpy
from host_tools.errors import KeyFileError, UsageError, VerifyError
from host_tools.esp import micropython_image
from tests.fakes.appimage import make_app_image

DEVICE = mpy.REPO / "tests" / "device"
PRODUCT = "iot-thermostat"


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(list(map(str, args)))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def image(tmp, name, chip="esp32", version="1.0.0", size=20000, **kw):
    path = Path(tmp) / name
    path.write_bytes(make_app_image(chip, version, size, seed=name.encode(), **kw))
    return path


def flip(data, pos):
    data = bytearray(data)
    data[pos] ^= 0x01
    return bytes(data)


# --- iotctl sign --kind firmware --------------------------------------------------------

@pytest.fixture(scope="module")
def keydir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fwkeys") / "keys"
    keys.init(d)
    return d


def test_sign_firmware_builds_a_firmware_bundle(keydir, tmp_path, capsys):
    img = image(tmp_path, "mp.bin", "esp32s3", "1.24.1")
    out = tmp_path / "fw.bnd"
    code, text, err = run_cli(["sign", "--kind", "firmware", img, "--keys", keydir, "--board",
                               "esp32s3", "--version", "1.2.0", "--security-version", "3",
                               "-o", out, "--json"], capsys)
    assert code == 0, err
    info = json.loads(text)
    assert (info["chip_id"], info["project"], info["app_version"], info["signed"]) == \
        (9, "micropython", "1.24.1", False)
    parsed = bundle.parse(out.read_bytes())
    m = parsed.manifest
    assert parsed.kind == 1 and m["kind"] == "firmware" and m["boards"] == ["esp32s3"]
    assert (m["version"], m["security_version"], m["product"]) == ("1.2.0", 3, PRODUCT)
    assert [f["path"] for f in m["files"]] == ["micropython.bin"]
    assert out.read_bytes()[parsed.payload_offset:] == img.read_bytes()


def test_sign_firmware_refuses_wrong_images(keydir, tmp_path):
    def build(path, board="esp32", **kw):
        return micropython_image.build(path, keydir, board, "1.0.0", 1, out=tmp_path / "o.bnd",
                                       **kw)

    c3 = image(tmp_path, "c3.bin", "esp32c3")
    with pytest.raises(UsageError, match=r"built for ESP32-C3 \(chip id 5\); board esp32 is "
                                         r"an ESP32 \(chip id 0\)"):
        build(c3)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(UsageError, match="first byte must be 0xE9"):
        build(junk)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(flip(image(tmp_path, "ok.bin").read_bytes(), 3000))
    with pytest.raises(UsageError, match="checksum|SHA-256"):
        build(bad)
    big = image(tmp_path, "big.bin", size=0x180000 + 4096)
    with pytest.raises(UsageError, match=r"the OTA partitions of esp32 hold 1572864 bytes"):
        build(big)
    build(big, flash_size="8MB")  # the 8 MiB variant has 2 MiB slots
    with pytest.raises(UsageError, match="not found"):
        build(tmp_path / "missing.bin")
    ok = image(tmp_path, "fine.bin")
    with pytest.raises(UsageError, match="must not overwrite"):
        micropython_image.build(ok, keydir, "esp32", "1.0.0", 1, out=ok)
    with pytest.raises(UsageError, match="MAJOR.MINOR.PATCH"):
        micropython_image.build(ok, keydir, "esp32", "1.0", 1)
    with pytest.raises(KeyFileError):
        micropython_image.build(ok, tmp_path / "nokeys", "esp32", "1.0.0", 1)


def test_sign_firmware_with_secure_boot_v2(keydir, tmp_path):
    sb = tmp_path / "sb.pem"
    esp.generate_signing_key(sb)
    img = image(tmp_path, "mp.bin", "esp32c3", size=30000)
    blob, info = micropython_image.build(img, keydir, "esp32c3", "1.0.0", 1, secure_boot_key=sb)
    assert info["signed"]
    parsed = bundle.parse(blob)
    signed = tmp_path / "signed.bin"
    signed.write_bytes(blob[parsed.payload_offset:])
    assert esp.verify_image(signed, sb) == "OK"
    assert signed.read_bytes()[:len(img.read_bytes())] == img.read_bytes()
    with pytest.raises(UsageError, match="already carries a Secure Boot v2 signature"):
        micropython_image.build(signed, keydir, "esp32c3", "1.0.1", 1, secure_boot_key=sb)
    other = tmp_path / "other.pem"
    esp.generate_signing_key(other)
    with pytest.raises(VerifyError) as e:
        esp.verify_image(signed, other)
    assert e.value.verdict == "KEY_MISMATCH"


def test_sign_help_and_bad_kind(capsys):
    code, out, _ = run_cli(["sign", "--help"], capsys)
    assert code == 0 and "--secure-boot-key" in out and "--kind" in out
    code, _, err = run_cli(["sign", "--kind", "app", "x.bin", "--keys", "k", "--board", "esp32",
                            "--version", "1.0.0", "--security-version", "1", "-o", "o"], capsys)
    assert code == 2 and "firmware" in err


# --- the device side, through the fake esp32.Partition --------------------------------

def _fw_bundle(keydir, out, version, sec, img, board="esp32", serial=None, **kw):
    micropython_image.build(img, keydir, board, version, sec, out=out, serial=serial, **kw)
    return str(out)


def _raw_bundle(keydir, out, files, kind="firmware", boards=("esp32",), product=PRODUCT):
    key, cert, _ = keys.current_update_key(keydir)
    m = bundle.make_manifest(kind, product, list(boards), "9.0.0", 9, files)
    Path(out).write_bytes(bundle.assemble(m, files, key, cert))
    return str(out)


@pytest.fixture(scope="module")
def fw_env(tmp_path_factory):
    """Keys, a unix flash image with a factory-flashed 1.0.0 in ota_0, and the bundles."""
    d = tmp_path_factory.mktemp("fwdev")
    k = d / "keys"
    keys.init(k)
    old = image(d, "old.bin", version="1.0.0")
    flash = d / "flash.bin"
    flashimage.create_blank(flash, board="unix")
    flashimage.write_partition(flash, "ota_0", old.read_bytes(), board="unix")
    flashimage.write_files(flash, "fctry", {
        "anchors.json": json.dumps(keys.anchors(k)).encode(),
        "identity.json": json.dumps({"device_id": "fw-test", "product": PRODUCT,
                                     "model": "TH-1", "board": "esp32"}).encode()})
    # 2.0.0 spans 6 sectors, the last one partial (ioctl erase + programmed with an offset)
    new = image(d, "new.bin", version="2.0.0", size=23000)
    b = {"v2": _fw_bundle(k, d / "v2.bnd", "2.0.0", 2, new),
         "v3": _fw_bundle(k, d / "v3.bnd", "3.0.0", 3, image(d, "v3.bin", version="3.0.0"))}
    return {"dir": d, "keys": k, "flash": flash, "bundles": b, "new": new}


def _tamper_cases(env):
    d, k = env["dir"], env["keys"]
    now = int(time.time())
    v3 = Path(env["bundles"]["v3"]).read_bytes()
    p = bundle.parse(v3)
    cases = []

    def add(name, data, verdict):
        path = d / f"t-{name}.bnd"
        path.write_bytes(data)
        cases.append([name, str(path), verdict])

    add("flipped_image_byte", flip(v3, p.payload_offset + 5000), "BAD_FILE_HASH")
    add("flipped_manifest_byte", flip(v3, 64 + 10), "BAD_MANIFEST_HASH")
    add("flipped_signature", flip(v3, p.payload_offset - 1), "BAD_SIGNATURE")
    add("truncated_image", v3[:p.payload_offset + 9000], "TRUNCATED")
    add("truncated_prefix", v3[:p.payload_offset - 10], "TRUNCATED")
    add("extra_bytes", v3 + b"\0", "EXTRA_BYTES")
    other = d / "other-keys"
    keys.init(other)
    add("unknown_root", Path(_fw_bundle(other, d / "o.bnd", "3.0.0", 3, env["new"])).read_bytes(),
        "UNKNOWN_ROOT")
    img = image(d, "t.bin", version="3.0.1")
    add("wrong_product", Path(_fw_bundle(k, d / "p.bnd", "3.0.1", 3, img, product="other-thing"))
        .read_bytes(), "WRONG_PRODUCT")
    s3 = image(d, "s3.bin", "esp32s3", "3.0.1")
    add("wrong_board", Path(_fw_bundle(k, d / "s3.bnd", "3.0.1", 3, s3, board="esp32s3"))
        .read_bytes(), "WRONG_BOARD")
    add("expired", Path(_fw_bundle(k, d / "e.bnd", "3.0.1", 3, img, expires=now - 60))
        .read_bytes(), "EXPIRED")
    add("app_kind", Path(_raw_bundle(k, d / "a.bnd", {"app.py": b"pass\n"}, kind="app"))
        .read_bytes(), "WRONG_KIND")
    add("two_files", Path(_raw_bundle(k, d / "2.bnd", {"micropython.bin": img.read_bytes(),
                                                       "extra.bin": b"x"})).read_bytes(),
        "BAD_MANIFEST")
    add("not_an_image", Path(_raw_bundle(k, d / "n.bnd", {"micropython.bin": b"\0" * 9000}))
        .read_bytes(), "BAD_IMAGE")
    # Built with ESP-IDF anti-rollback for another security version than the bundle's (9).
    ar = image(d, "ar.bin", version="3.0.1", secure_version=5)
    add("secure_version_mismatch",
        Path(_raw_bundle(k, d / "sv.bnd", {"micropython.bin": ar.read_bytes()})).read_bytes(),
        "BAD_IMAGE")
    c3 = image(d, "c3.bin", "esp32c3", "3.0.1")
    add("wrong_chip", Path(_raw_bundle(k, d / "c.bnd", {"micropython.bin": c3.read_bytes()}))
        .read_bytes(), "BAD_IMAGE")
    # Signed and hashed correctly, but the image itself is broken: set_boot refuses it.
    broken = flip(img.read_bytes(), 2000)
    add("image_refused_by_bootloader",
        Path(_raw_bundle(k, d / "r.bnd", {"micropython.bin": broken})).read_bytes(),
        "IMAGE_REFUSED")
    # Larger than the 1 MiB OTA partition of the simulated flash: refused from the prefix
    # alone, so only the prefix and a few payload bytes are kept.
    big = image(d, "big.bin", version="3.0.2", size=(1 << 20) + 8192)
    blob = Path(_fw_bundle(k, d / "big.bnd", "3.0.2", 3, big)).read_bytes()
    add("too_large", blob[:bundle.parse(blob).payload_offset + 100], "TOO_LARGE")
    return cases, now


def test_install_confirm_rollback_refuse_and_tamper(fw_env, tmp_path, run_mpy):
    env = fw_env
    cases, now = _tamper_cases(env)
    d, k = tmp_path, tmp_path / "keys"
    shutil.copytree(env["keys"], k)
    b = dict(env["bundles"])
    keys.rotate(k)  # update key serial 2
    b["v4_key2"] = _fw_bundle(k, d / "v4.bnd", "4.0.0", 4, image(d, "v4.bin", version="4.0.0"))
    b["v5_key1"] = _fw_bundle(k, d / "v5.bnd", "5.0.0", 5, image(d, "v5.bin", version="5.0.0"),
                              serial=1)
    b["downgrade_key2"] = _fw_bundle(k, d / "dg.bnd", "5.0.0", 3,
                                     image(d, "dg.bin", version="5.0.0"))
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps({"bundles": b, "tamper": cases, "now": now}))
    work = tmp_path / "flash.bin"
    shutil.copyfile(env["flash"], work)
    proc = run_mpy(DEVICE / "fw_update.py", [work, spec], timeout=300)
    out = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and out and out[-1] == "OK", proc.stdout[-3000:] + proc.stderr
    verdicts = json.loads(out[-2])["verdicts"]
    assert sorted(verdicts) == sorted(c[0] for c in cases)
    assert all(v.startswith(c[2]) for c, v in zip(cases, (verdicts[c[0]] for c in cases)))


@pytest.mark.parametrize("kind", ["update", "rollback"])
def test_power_loss_at_every_flash_operation(fw_env, tmp_path, kind):
    env = fw_env
    work = tmp_path / "flash.bin"
    # The legacy tear and the suffix/residual-erase shape (`make powercut` runs all three).
    proc = mpy.run(DEVICE / "fw_powerloss.py", [env["flash"], work, env["bundles"]["v2"], kind,
                                                "2.0.0", "1.0.0", "legacy,1"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nfirmware power-loss sweep ({kind}): {result['cut_points']} cut points, "
          f"outcomes {result['outcomes']}", file=sys.stderr)
    assert result["failures"] == []
    assert result["cut_points"] > 20
    assert sum(result["outcomes"].values()) == result["states"] == 2 * result["cut_points"]
    assert any(o.startswith("1.0.0") for o in result["outcomes"])  # cuts before the switch
    if kind == "update":
        # Cuts after the confirmation reached otadata keep 2.0.0 (completed at the next boot).
        assert result["final"] == "2.0.0" and "2.0.0 confirmed" in result["outcomes"]
    else:
        # An unconfirmed image never survives: every cut ends in 1.0.0.
        assert result["final"].startswith("1.0.0")
        assert all(o.startswith("1.0.0") for o in result["outcomes"])


def test_sign_binds_the_security_version_to_the_images_efuse_secure_version(keydir, tmp_path):
    """An image built with ESP-IDF anti-rollback carries secure_version, which its bootloader
    checks against the eFuse SECURE_VERSION: the bundle's security version must be the same."""
    img = tmp_path / "ar.bin"
    img.write_bytes(make_app_image("esp32", "1.24.1", 20000, seed=b"ar", secure_version=3))
    with pytest.raises(UsageError, match="secure_version is 3 .* security version is 2"):
        micropython_image.build(img, keydir, "esp32", "1.2.0", 2, out=tmp_path / "x.bnd")
    assert not (tmp_path / "x.bnd").exists()
    _blob, info = micropython_image.build(img, keydir, "esp32", "1.2.0", 3, out=tmp_path / "ok.bnd")
    assert info["secure_version"] == 3 and info["security_version"] == 3
