"""Bundles: build, inspect, and the tamper matrix judged by the device's own installer."""

import json
import struct
import time

import pytest

from host_tools import bundle, keys, verify
from host_tools.cli import main as cli_main
from host_tools.errors import UsageError, VerifyError

FILES = {"app.py": b"print('hello')\n" * 50, "lib/util.py": b"X = 1\n" * 300,
         "data/empty.txt": b""}


@pytest.fixture(scope="module")
def keydir(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    keys.init(d)
    return d


def _bundle(keydir, tmp_path, name="b.bin", **kw):
    args = dict(boards=["unix"], version="1.2.3", security_version=3, files=dict(FILES),
                product="iot-thermostat")
    args.update(kw)
    data = bundle.build(keydir, **args)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def _verdict(path, keydir, **kw):
    return verify.device_verdict(path, keydir, **kw)["verdict"]


def _offsets(data):
    p = bundle.parse(data)
    m0 = 64
    c0 = m0 + len(p.manifest_raw)
    s0 = c0 + len(p.cert)
    return p, m0, c0, s0, p.payload_offset


def test_valid_bundle_verifies(keydir, tmp_path):
    path, _ = _bundle(keydir, tmp_path)
    v = verify.device_verdict(path, keydir, board="unix")
    assert v["ok"] and v["verdict"] == "OK", v


def _flip(data, off):
    b = bytearray(data)
    b[off] ^= 0x01
    return bytes(b)


def test_tamper_matrix(keydir, tmp_path):
    path, data = _bundle(keydir, tmp_path)
    p, m0, c0, s0, p0 = _offsets(data)
    cases = {
        "header magic": (_flip(data, 0), "BAD_MAGIC"),
        "header format": (_flip(data, 4), "BAD_FORMAT"),
        "header reserved": (_flip(data, 25), "BAD_FORMAT"),
        "header payload length": (_flip(data, 16), "BAD_SIGNATURE"),
        "header manifest hash": (_flip(data, 40), "BAD_MANIFEST_HASH"),
        "manifest": (_flip(data, m0 + 10), "BAD_MANIFEST_HASH"),
        "certificate serial": (_flip(data, c0 + 9), "BAD_CERT_SIGNATURE"),
        "certificate serial zero": (_flip(data, c0 + 8), "BAD_CERT"),
        "certificate key": (_flip(data, c0 + 30), "BAD_CERT_SIGNATURE"),
        "certificate root id": (_flip(data, c0 + 16), "UNKNOWN_ROOT"),
        "signature R": (_flip(data, s0 + 3), "BAD_SIGNATURE"),
        "signature S": (_flip(data, s0 + 40), "BAD_SIGNATURE"),
        "truncated in header": (data[:40], "TRUNCATED"),
        "truncated in prefix": (data[:s0 + 10], "TRUNCATED"),
        "truncated in payload": (data[:-5], "TRUNCATED"),
        "extra bytes": (data + b"\x00", "EXTRA_BYTES"),
        "empty": (b"", "TRUNCATED"),
    }
    off = p0
    for entry in p.manifest["files"]:
        if entry["size"]:
            cases[f"file {entry['path']}"] = (_flip(data, off + entry["size"] // 2),
                                               "BAD_FILE_HASH")
        off += entry["size"]
    got = {}
    for name, (blob, _want) in cases.items():
        q = tmp_path / "case.bin"
        q.write_bytes(blob)
        got[name] = _verdict(q, keydir, board="unix", product="iot-thermostat")
    assert got == {name: want for name, (_b, want) in cases.items()}


def test_rules(keydir, tmp_path):
    path, _ = _bundle(keydir, tmp_path)
    assert _verdict(path, keydir, board="esp32") == "WRONG_BOARD"
    assert _verdict(path, keydir, product="door-lock") == "WRONG_PRODUCT"
    assert _verdict(path, keydir, sec_floor=4) == "DOWNGRADE"
    assert _verdict(path, keydir, sec_floor=3) == "OK"
    assert _verdict(path, keydir, key_floor=2) == "KEY_REVOKED"
    assert _verdict(path, keydir, capacity=1000) == "TOO_LARGE"
    expired, _ = _bundle(keydir, tmp_path, "exp.bin", expires=int(time.time()) - 10)
    assert _verdict(expired, keydir, now=int(time.time())) == "EXPIRED"
    assert _verdict(expired, keydir, now=0) == "OK"  # no trusted clock: expiry not judged
    cert = keys.parse_cert(keys.current_update_key(keydir)[1])
    assert _verdict(path, keydir, now=cert.not_after + 1) == "KEY_EXPIRED"


def test_unknown_signer_is_refused(keydir, tmp_path):
    other = tmp_path / "other"
    keys.init(other)
    path, _ = _bundle(other, tmp_path)
    assert _verdict(path, keydir) == "UNKNOWN_ROOT"


def test_ecdsa_chain_verifies(tmp_path):
    d = tmp_path / "p256"
    keys.init(d, "ecdsa-p256")
    path, data = _bundle(d, tmp_path)
    assert _verdict(path, d) == "OK"
    _p, _m0, _c0, s0, _p0 = _offsets(data)
    path.write_bytes(_flip(data, s0 + 5))
    assert _verdict(path, d) == "BAD_SIGNATURE"


def test_rotated_key_is_accepted_and_floor_revokes_old(keydir, tmp_path):
    d = tmp_path / "k"
    keys.init(d)
    old, _ = _bundle(d, tmp_path, "old.bin")
    keys.rotate(d)
    new, _ = _bundle(d, tmp_path, "new.bin")
    assert _verdict(new, d, key_floor=2) == "OK"
    assert _verdict(old, d, key_floor=2) == "KEY_REVOKED"


def test_signed_but_malformed_manifest_is_refused(keydir, tmp_path):
    """Even a manifest signed by a trusted key must be well formed."""
    key, cert, _ = keys.current_update_key(keydir)
    m = bundle.make_manifest("app", "iot-thermostat", ["unix"], "1.0.0", 1, dict(FILES))
    valid = bundle.assemble(m, FILES, key, cert)
    first = m["files"][0]
    for bad in ({**m, "extra": 1}, {**m, "version": "1.0"}, {**m, "security_version": -1},
                {**m, "files": [{**first, "path": "../escape.py"}] + m["files"][1:]},
                {**m, "files": [{**first, "path": ".hidden.py"}] + m["files"][1:]},
                {**m, "files": [{**first, "size": first["size"] + 1}] + m["files"][1:]},
                {**m, "files": [first, first] + m["files"][1:]},
                {**m, "kind": "firmware"}, {**m, "boards": []}, {**m, "security_fix": "yes"},
                # characters outside each field's set (a byte table per field on the device)
                {**m, "files": [{**first, "path": "my app.py"}] + m["files"][1:]},
                {**m, "files": [{**first, "path": "caf\u00e9.py"}] + m["files"][1:]},
                {**m, "files": [{**first, "path": "a\\b.py"}] + m["files"][1:]},
                {**m, "product": "IOT-thermostat"}, {**m, "product": "iot_thermostat"},
                {**m, "product": ""}, {**m, "sbom_sha256": "AB" * 32},
                {**m, "sbom_sha256": "g" + "0" * 63}, {**m, "sbom_sha256": "0" * 63},
                {**m, "sbom_sha256": " " + "0" * 63}, {**m, "sbom_sha256": 7}):
        q = tmp_path / "bad.bin"
        q.write_bytes(_resign(valid, json.dumps(bad, separators=(",", ":")).encode(), key, cert))
        assert _verdict(q, keydir, board="unix", product="iot-thermostat") == "BAD_MANIFEST", bad


def _resign(raw, manifest_raw, key, cert):
    import hashlib
    p = bundle.parse(raw)
    header = b"IOTB" + struct.pack("<BBBBIHHI", 1, 0, 1, 0, len(manifest_raw), len(cert), 64,
                                   p.payload_len) + bytes(12) \
        + hashlib.sha256(manifest_raw).digest()
    return header + manifest_raw + cert + keys.sign(key, header) + raw[p.payload_offset:]


def test_builder_rejects_bad_input(keydir):
    with pytest.raises(UsageError, match="MAJOR.MINOR.PATCH"):
        bundle.build(keydir, ["unix"], "1.2", 1, files=dict(FILES), product="p")
    with pytest.raises(UsageError, match="not allowed"):
        bundle.build(keydir, ["unix"], "1.2.3", 1, files={"../x.py": b""}, product="p")
    with pytest.raises(UsageError, match="security version"):
        bundle.build(keydir, ["unix"], "1.2.3", -1, files=dict(FILES), product="p")


def test_build_from_firmware_and_inspect_cli(keydir, tmp_path, capsys):
    out = tmp_path / "fw.bin"
    with pytest.raises(SystemExit) as e:
        cli_main(["build", "--keys", str(keydir), "--board", "unix", "--version", "1.0.0",
                  "--security-version", "1", "-o", str(out)])
    assert e.value.code == 0
    info = verify.describe(out)
    assert [f["path"] for f in info["manifest"]["files"]] == ["app.romfs"]
    data = out.read_bytes()
    parsed = bundle.parse(data)
    paths = bundle.romfs_paths(data[parsed.payload_offset:])  # the files in the ROMFS image
    assert "app.mpy" in paths and "manifest.json" not in paths
    assert not any(p.endswith(".py") for p in paths), "sources ship precompiled"
    assert not any("__pycache__" in p for p in paths)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli_main(["inspect", str(out), "--keys", str(keydir), "--json"])
    assert e.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"]["verdict"] == "OK" and doc["manifest"]["version"] == "1.0.0"
    # Without --keys, inspect is a dump (like imgtool dumpinfo): exit 0, marked unverified.
    with pytest.raises(SystemExit) as e:
        cli_main(["inspect", str(out)])
    text = capsys.readouterr().out
    assert e.value.code == 0 and "verdict: UNVERIFIED" in text and "not checked" in text
    assert "version           1.0.0" in text
    with pytest.raises(SystemExit) as e:
        cli_main(["inspect", str(out), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and doc["verdict"] == {
        "ok": None, "verdict": "UNVERIFIED", "text": doc["verdict"]["text"]}
    assert doc["manifest"]["version"] == "1.0.0"
    bad = tmp_path / "bad.bin"
    bad.write_bytes(_flip(out.read_bytes(), len(out.read_bytes()) - 3))
    with pytest.raises(SystemExit) as e:
        cli_main(["inspect", str(bad), "--keys", str(keydir)])
    assert e.value.code == 4
    assert "BAD_FILE_HASH" in capsys.readouterr().out


def test_romfs_files_read_back_what_the_builder_wrote():
    files = {"app.mpy": b"\x4d" * 300, "lib/x.mpy": b"abc", "static/s.css": b"", "e/f/g": b"q"}
    image = bundle.romfs_image(files)
    assert bundle.romfs_files(image) == files
    assert sorted(bundle.romfs_paths(image)) == sorted(files)
    for cut in range(3, len(image)):  # a torn image is an error, never a shorter file list
        with pytest.raises(VerifyError, match="BAD_IMAGE"):
            bundle.romfs_files(image[:cut])
    with pytest.raises(VerifyError, match="BAD_IMAGE"):
        bundle.romfs_files(b"\x00" + image[1:])
