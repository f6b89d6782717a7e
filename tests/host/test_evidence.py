"""Release evidence: the CycloneDX SBOM of every bundle (bound by the signed manifest) and of a
firmware image, and the offline advisory check against it (provision 4.2-3)."""

import hashlib
import json
import sys
from pathlib import Path

import pytest

from host_tools import bundle, keys, verify
from host_tools.cli import main as cli_main
from host_tools.errors import UsageError, VerifyError
from host_tools.esp import micropython_image
from host_tools.report import advisories, sbom

REPO = Path(__file__).resolve().parents[2]
FEED = REPO / "tests" / "data" / "advisories"
sys.path.insert(0, str(REPO / "tests" / "fakes"))
from appimage import make_app_image  # noqa: E402


@pytest.fixture(scope="module")
def keydir(tmp_path_factory):
    d = tmp_path_factory.mktemp("evkeys") / "keys"
    keys.init(d)
    return d


@pytest.fixture(scope="module")
def demo(keydir, tmp_path_factory):
    """The demo's bundle (board unix), built as CI builds it, with its SBOM."""
    d = tmp_path_factory.mktemp("demo")
    data = bundle.build(keydir, ["unix"], "1.0.0", 1, out=d / "app.bin",
                        sbom_out=d / "app.cdx.json")
    return d / "app.bin", data, d / "app.cdx.json"


def _cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main([str(a) for a in args])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_bundle_sbom_validates_and_is_bound_by_the_signature(demo, keydir, tmp_path):
    path, data, sbom_path = demo
    raw = sbom_path.read_bytes()
    assert sbom.validate(raw) == []  # the CycloneDX 1.6 JSON schema, strict
    doc = json.loads(raw)
    assert doc["specVersion"] == "1.6" and doc["serialNumber"].startswith("urn:uuid:")
    m = bundle.parse(data).manifest
    assert m["sbom_sha256"] == sbom.digest(raw)
    files = {c["name"]: c for c in doc["components"] if c["type"] == "file"}
    assert [e["path"] for e in m["files"]] == [bundle.ROMFS_IMAGE]
    # The signed ROMFS image, and each file inside it, each with its own hash.
    p = bundle.parse(data)
    inside = bundle.romfs_files(data[p.payload_offset:])
    assert "app.mpy" in inside and len(inside) > 10
    assert sorted(files) == sorted([bundle.ROMFS_IMAGE]
                                   + [f"{bundle.ROMFS_IMAGE}/{k}" for k in inside])
    for e in m["files"]:
        assert files[e["path"]]["hashes"] == [{"alg": "SHA-256", "content": e["sha256"]}]
    for k, blob in inside.items():
        got = files[f"{bundle.ROMFS_IMAGE}/{k}"]
        assert got["hashes"] == [{"alg": "SHA-256",
                                  "content": hashlib.sha256(blob).hexdigest()}]
    runtime = [c for c in doc["components"] if c["name"] == "micropython"]
    version, build = sbom._unix_micropython(__import__("host_tools.mpy").mpy.micropython_path())
    assert [c["version"] for c in runtime] == [version]
    assert any(p["value"].startswith("unix port " + build.split()[0])
               for p in runtime[0]["properties"])
    tools = {t["name"]: t["version"] for t in doc["metadata"]["tools"]["components"]}
    assert tools["iotctl"] == sbom.tool_version() and "mpy-cross" in tools
    assert doc["metadata"]["component"]["version"] == "1.0.0"
    # The device accepts the bound SBOM hash; made again from the bundle it is the same SBOM.
    assert verify.device_verdict(path, keydir)["verdict"] == "OK"
    assert sbom.check_bundle(data)["sbom"] == raw
    # Any other SBOM is refused, and the schema check refuses a broken one.
    forged = json.loads(raw)
    forged["components"] = [c for c in forged["components"] if c["name"] != "micropython"]
    with pytest.raises(VerifyError, match="SBOM_MISMATCH"):
        sbom.check_bundle(data, json.dumps(forged).encode())
    del forged["bomFormat"]
    forged["components"][0]["type"] = "gadget"
    assert len(sbom.validate(json.dumps(forged).encode())) >= 2
    # Swapping the hash in the manifest breaks the signature chain (the header binds it).
    tampered = data.replace(m["sbom_sha256"].encode(), b"0" * 64)
    (tmp_path / "t.bin").write_bytes(tampered)
    assert verify.device_verdict(tmp_path / "t.bin", keydir)["verdict"] == "BAD_MANIFEST_HASH"


def test_signed_manifest_with_a_malformed_sbom_hash_is_refused(keydir, tmp_path, capsys):
    key, cert, _ = keys.current_update_key(keydir)
    files = {"main.py": b"print(1)\n"}
    for bad in ("ABC", "A" * 64, 7, None, "g" * 64):
        m = bundle.make_manifest("app", "iot-thermostat", ["unix"], "1.0.0", 1, files)
        m["sbom_sha256"] = bad
        (tmp_path / "b.bin").write_bytes(bundle.assemble(m, files, key, cert))
        assert verify.device_verdict(tmp_path / "b.bin", keydir)["verdict"] == "BAD_MANIFEST"
    m = bundle.make_manifest("app", "iot-thermostat", ["unix"], "1.0.0", 1, files)
    (tmp_path / "old.bin").write_bytes(bundle.assemble(m, files, key, cert))  # no SBOM bound
    assert verify.device_verdict(tmp_path / "old.bin", keydir)["verdict"] == "OK"
    with pytest.raises(VerifyError, match="NO_SBOM"):
        sbom.check_bundle((tmp_path / "old.bin").read_bytes())
    code, out, err = _cli(["sbom", tmp_path / "old.bin"], capsys)  # made, said to be unbound
    assert code == 0 and json.loads(out)["bomFormat"] == "CycloneDX" and "NOT authenticated" in err
    code, _, err = _cli(["sbom", tmp_path / "old.bin", "--check", tmp_path / "old.bin"], capsys)
    assert code == VerifyError.exit_code and "NO_SBOM" in err


def test_firmware_image_sbom_and_firmware_bundle(keydir, tmp_path, capsys):
    image = make_app_image("esp32", "1.24.1", 20000)
    doc = json.loads(sbom.for_image(image))
    assert sbom.validate(sbom.for_image(image)) == []
    subject = doc["metadata"]["component"]
    assert (subject["name"], subject["version"], subject["type"]) == \
        ("micropython", "1.24.1", "firmware")
    assert subject["cpe"] == "cpe:2.3:a:micropython:micropython:1.24.1:*:*:*:*:*:*:*"
    assert {(c["name"], c.get("version")) for c in doc["components"]} == \
        {("esp-idf", "5.2.2"), ("micropython.bin", None)}
    (tmp_path / "mp.bin").write_bytes(image)
    blob, _ = micropython_image.build(tmp_path / "mp.bin", keydir, "esp32", "2.0.0", 2)
    bound = sbom.check_bundle(blob)
    names = {c["name"]: c.get("version") for c in json.loads(bound["sbom"])["components"]}
    assert names["micropython"] == "1.24.1" and "micropython.bin" in names
    # The command: an image, a bundle checked against its manifest, and refusals.
    code, out, err = _cli(["sbom", tmp_path / "mp.bin"], capsys)
    assert code == 0 and json.loads(out)["metadata"]["component"]["version"] == "1.24.1"
    (tmp_path / "fw.bin").write_bytes(blob)
    code, _, err = _cli(["sbom", tmp_path / "fw.bin", "-o", tmp_path / "fw.cdx.json"], capsys)
    assert code == 0 and bound["sha256"] in err
    code, out, _ = _cli(["sbom", tmp_path / "fw.bin", "--check", tmp_path / "fw.cdx.json"],
                        capsys)
    assert code == 0 and "matches the signed manifest" in out
    (tmp_path / "junk.bin").write_bytes(b"\0" * 100)
    code, _, err = _cli(["sbom", tmp_path / "junk.bin"], capsys)
    assert code == 2 and "neither a signed bundle" in err
    with pytest.raises(UsageError, match="no ESP-IDF application descriptor"):
        sbom.for_image(b"\xe9" + bytes(300))


def test_advisories_check_fails_on_the_fixture_advisory_and_passes_without_it(
        demo, keydir, tmp_path, capsys):
    _, _, demo_sbom = demo
    feed = advisories.load_feed(FEED)
    assert [a["id"] for a in feed] == ["CVE-2026-1998"]
    # The demo bundle (unix port) is not affected; nor is an ESP32 build on the pinned
    # MicroPython 1.28.0 (the pin moved off 1.24.1 for this advisory, and for ROMFS); a
    # 1.24.1 or 1.27.0 firmware image is.
    assert advisories.check(demo_sbom, FEED)["matches"] == []
    bundle.build(keydir, ["esp32"], "1.0.0", 1, out=tmp_path / "esp.bin",
                 sbom_out=tmp_path / "esp.cdx.json")
    assert advisories.check(tmp_path / "esp.cdx.json", FEED)["matches"] == []
    (tmp_path / "old.cdx.json").write_bytes(sbom.for_image(make_app_image("esp32", "1.24.1",
                                                                          8000)))
    with pytest.raises(advisories.Affected) as e:
        advisories.check(tmp_path / "old.cdx.json", FEED)
    assert [(m["id"], m["component"], m["version"]) for m in e.value.matches] == \
        [("CVE-2026-1998", "micropython", "1.24.1")]
    for version, affected in (("1.24.1", True), ("1.27.0", True), ("1.28.0", False)):
        (tmp_path / "img.cdx.json").write_bytes(sbom.for_image(make_app_image(
            "esp32", version, 8000)))
        code, out, err = _cli(["advisories", "--sbom", tmp_path / "img.cdx.json",
                               "--feed", FEED], capsys)
        assert code == (advisories.Affected.exit_code if affected else 0), (version, err)
        assert ("AFFECTED CVE-2026-1998: micropython " + version in out) == affected
    # Without the fixture advisory the same SBOM passes.
    (tmp_path / "empty").mkdir()
    code, out, _ = _cli(["advisories", "--sbom", tmp_path / "old.cdx.json", "--feed",
                         tmp_path / "empty"], capsys)
    assert code == 0 and "no advisory of 0" in out
    code, out, _ = _cli(["advisories", "--json", "--sbom", tmp_path / "old.cdx.json",
                         "--feed", FEED / "CVE-2026-1998.json"], capsys)
    error = json.loads(out)["error"]
    assert code == advisories.Affected.exit_code and error["name"] == "advisory"
    assert error["matches"][0]["bom_ref"] == "runtime:micropython@1.24.1"


def test_advisory_ranges_csaf_and_bad_feeds(demo, tmp_path, capsys):
    key = advisories.version_key
    assert key("1.9.0") < key("1.10.0") < key("v1.10.1") and key("1.29.0-preview") < \
        key("1.29.0") < key("1.29.0.1") and key("not a version") is None
    ev = [{"introduced": "1.2.0"}, {"fixed": "1.4.0"}, {"introduced": "2.0.0"},
          {"last_affected": "2.1.0"}]
    inside = [v for v in ("1.1.9", "1.2.0", "1.3.9", "1.4.0", "1.9", "2.0.0", "2.1.0", "2.1.1")
              if advisories._in_events(v, ev)]
    assert inside == ["1.2.0", "1.3.9", "2.0.0", "2.1.0"]
    # A CSAF 2.0 advisory naming MicroPython by a vers range.
    version_range = {"category": "product_version_range", "name": "vers:generic/>=1.20.0|<1.28.0",
                     "product": {"product_id": "MP", "name": "mp"}}
    name = {"category": "product_name", "name": "micropython", "branches": [version_range]}
    csaf = {"document": {"category": "csaf_security_advisory", "csaf_version": "2.0",
                         "title": "t", "tracking": {"id": "TH-2026-0001"}},
            "product_tree": {"branches": [{"category": "vendor", "name": "MicroPython",
                                           "branches": [name]}]},
            "vulnerabilities": [{"cve": "CVE-2026-1998", "product_status": {
                "known_affected": ["MP"]}}]}
    (tmp_path / "csaf.json").write_text(json.dumps(csaf))
    (tmp_path / "img.cdx.json").write_bytes(sbom.for_image(make_app_image("esp32", "1.24.1",
                                                                          8000)))
    with pytest.raises(advisories.Affected, match="CVE-2026-1998"):
        advisories.check(tmp_path / "img.cdx.json", tmp_path / "csaf.json")
    assert advisories.check(demo[2], tmp_path / "csaf.json")["matches"] == []
    # Unusable inputs: a clear error (exit 2), nothing matched.
    for name, text, what in (("bad.json", "{not json", "not JSON"),
                             ("noid.json", '{"affected": []}', "needs an id"),
                             ("range.json", '{"id": "X", "affected": [{"ranges": [{"type": '
                              '"DATE"}]}]}', "unknown range type")):
        (tmp_path / name).write_text(text)
        code, _, err = _cli(["advisories", "--sbom", demo[2], "--feed", tmp_path / name],
                            capsys)
        assert code == 2 and what in err, (name, err)
    code, _, err = _cli(["advisories", "--sbom", tmp_path / "csaf.json", "--feed", FEED],
                        capsys)
    assert code == 2 and "not a CycloneDX SBOM" in err
    code, _, err = _cli(["advisories", "--sbom", tmp_path / "none.json", "--feed", FEED],
                        capsys)
    assert code == 2 and "does not exist" in err


def test_platform_pin_is_what_the_board_guide_builds():
    """The ESP boards' SBOM names the MicroPython and ESP-IDF that docs/real-board.md builds."""
    import re

    guide = (REPO / "docs" / "real-board.md").read_text()
    pin = sbom.load_platform()
    mp = re.search(r"git clone -b (v[\d.]+) \S*micropython/micropython", guide)
    idf = re.search(r"git clone -b (v[\d.]+) (?:--recursive )?\S*espressif/esp-idf", guide)
    assert mp and idf, "docs/real-board.md no longer clones MicroPython and ESP-IDF by tag"
    assert (mp.group(1), idf.group(1)) == ("v" + pin["micropython"], pin["esp_idf"])
    assert [c[:2] for c in sbom.runtime("esp32")] == [("micropython", "1.28.0"),
                                                       ("esp-idf", "5.5.1")]
