"""TS 103 701 documents and regulatory maps generated from a test run: the ICS over EN 303 645
V3.1.3 Table B.1 (split provisions as rows of their own), the IXIT read from code, the CRA Annex I
map and the UK PSTI statement of compliance."""

import copy
import re

import pytest

from host_tools import provision
from host_tools.errors import UsageError
from host_tools.report import codefacts, conformance, cra, ics, ixit
from tests.host.test_conformance import FILLED, _iotctl, _junit


@pytest.fixture(scope="module")
def pmap():
    return conformance.load_map()


@pytest.fixture(scope="module")
def all_pass(pmap):
    return {t: "passed" for p in pmap["provision"] for t in p.get("evidence", [])}


def _doc(tmp_path, cases, product=FILLED):
    (tmp_path / "junit.xml").write_text(_junit(cases))
    prod = conformance.load_product(product)
    return conformance.build_report(conformance.load_map(), conformance.read_junit(
        tmp_path / "junit.xml"), prod, provenance={"commit": "a" * 40, "dirty": False,
                                                   "commit_from": "test run",
                                                   "checkout_commit": None,
                                                   "bundle": None}), prod


def test_v3_table_and_the_map_agree(pmap):
    v3 = ics.load_v3()
    refs = [r["ref"] for r in v3["provision"]]
    assert len(refs) == len(set(refs)) == 78
    assert all(re.fullmatch(r"(5\.\d+|6)-\d+[AB]?", r) for r in refs)
    assert all(re.fullmatch(r"[MR]|[MR]F \([a-z]+\)|[MR]C \(\d+\)|MCF \(\d+, [a-z]\)",
                            r["status"]) for r in v3["provision"])
    for split in ("5.3-4", "5.3-6", "5.3-15", "5.6-4", "5.13-1", "6-3"):  # only as ...A/...B
        assert split not in refs and {split + "A", split + "B"} <= set(refs)
    assert ics.check_map(pmap, v3) == []
    worded = {r["ref"] for r in v3["provision"] if r["wording"]}
    for p in pmap["provision"]:
        cw = p["crosswalk"]
        if cw["en_v3_verified"]:  # verified only where every mapped row's wording was read
            assert set(cw["en_v3"]) <= worded, p["ref"]
    assert {p["ref"]: p["crosswalk"]["en_v3"] for p in pmap["provision"]
            if p["ref"] in ("4.6-2", "4.8-3", "4.13-1", "4.3-8")} == {
        "4.3-8": ["5.3-15A", "5.3-15B"], "4.6-2": ["5.6-3", "5.6-4A", "5.6-4B"],
        "4.8-3": ["6-3A"], "4.13-1": ["5.13-1A", "5.13-1B"]}
    broken = copy.deepcopy(pmap)
    broken["provision"][0]["crosswalk"]["en_v3"] = ["5.6-4"]
    assert ics.check_map(broken, v3) == ["4.1-1: EN V3.1.3 5.6-4 is not a row of Table B.1"]


def test_ics_rows_follow_the_run(tmp_path, all_pass, capsys):
    doc, _ = _doc(tmp_path, all_pass)
    rows = {r["ref"]: r for r in ics.build(doc)["rows"]}
    assert len(rows) == 78 and rows["5.0-1"]["support"] == "-"
    assert rows["5.1-1"]["support"] == "Y" and rows["5.1-1"]["ixit"] == ["1-AuthMech"]
    assert rows["5.13-1A"]["support"] == rows["5.13-1B"]["support"] == "Y"
    assert rows["6-3A"]["support"] == "Y" and rows["6-3B"]["support"] == "-"
    assert rows["5.2-3"]["support"] == "Y" and any(
        "test_evidence.py" in e["test"] for e in rows["5.2-3"]["evidence"])
    first = next(t for t in all_pass if "test_password_generator" in t)
    doc, _ = _doc(tmp_path, dict(all_pass, **{first: "failed"}))
    rows = {r["ref"]: r for r in ics.build(doc)["rows"]}
    assert rows["5.1-1"]["support"] == rows["5.1-2"]["support"] == "FAIL"
    doc, _ = _doc(tmp_path, all_pass, conformance.PRODUCT_PATH)  # placeholders: 4.2-1 is N
    rows = {r["ref"]: r for r in ics.build(doc)["rows"]}
    assert rows["5.2-1"]["support"] == "N"
    (tmp_path / "junit.xml").write_text(_junit(all_pass))
    code, out, _ = _iotctl(["report", "--junit", tmp_path / "junit.xml", "--config", FILLED,
                            "--format", "ics"], capsys)
    assert code == 0 and out.startswith("# ICS: implementation conformance statement")
    line = next(x for x in out.splitlines() if x.startswith("| Provision 5.6-4A "))
    assert "4.6-2: N" in line and "partial (not supported): " in line


def test_ixit_values_are_read_from_the_code(tmp_path, all_pass, capsys):
    doc, _ = _doc(tmp_path, all_pass)
    found = ixit.build(doc, ics.rows(doc, ics.load_v3()))
    assert [x["ixit"] for x in found] == ["1-AuthMech", "7-UpdMech", "10-SecParam",
                                          "20-SecBoot", "23-ResMech", "25-DelFunc"]
    known = {r["ref"] for r in ics.load_v3()["provision"]}
    values = {}
    for x in found:
        assert set(x["test_groups"]) <= known and x["entries"]
        for e in x["entries"]:
            for v in e["values"]:
                values[(e["id"], v["item"])] = v
                m = re.fullmatch(r"([\w/]+\.py):(\w+)", v["source"])
                if m:  # a single constant: reading it again gives the value shown
                    assert codefacts.const(m.group(1), m.group(2)).value == v["value"]
    auth = "AuthMech-Owner-Password"
    assert values[(auth, "PBKDF2 iterations")]["value"] == provision.DEFAULT_ITERATIONS
    assert f"{provision.password_bits():.1f} bits" in values[(auth, "generated password")]["value"]
    assert "POST /api/login" in values[(auth, "login interfaces")]["value"]
    assert values[("UpdMech-App-Bundle", "trial boots before rollback")]["value"] == 3
    sb = values[("SecBoot-esp32", "secure boot")]
    assert sb["value"]["version"] == 2 and sb["source"] == "boards/esp32/board.json"
    assert values[("DelFunc-Owner-Pages", "pages")]["value"] == [
        "GET /delete", "POST /delete", "GET /reset", "POST /reset"]
    auth_tests = next(x for x in found if x["ixit"] == "1-AuthMech")["tests"]
    assert {"test": next(t for t in all_pass if "test_password_generator" in t),
            "outcome": "passed"} in auth_tests
    # A constant that moved is an error naming it, never a silent blank.
    (tmp_path / "m.py").write_text("X = compute()\nY = const(5)\n")
    assert codefacts.constants("m.py", tmp_path)["Y"].value == 5
    with pytest.raises(UsageError, match="defines no constant X"):
        codefacts.const("m.py", "X", tmp_path)
    (tmp_path / "junit.xml").write_text(_junit(all_pass))
    code, out, _ = _iotctl(["report", "--junit", tmp_path / "junit.xml", "--ixit"], capsys)
    assert code == 0 and "## IXIT 20-SecBoot: Secure boot mechanisms" in out
    code, _, err = _iotctl(["report", "--junit", tmp_path / "junit.xml", "--ixit", "--format",
                            "ics"], capsys)
    assert code == 2 and "--ixit and --format" in err


def test_cra_map_and_psti_statement(tmp_path, all_pass, capsys):
    doc, prod = _doc(tmp_path, all_pass)
    reqs = {r["ref"]: r for r in cra.cra_map(doc)["requirements"]}
    assert {"I.2(a)", "I.2(m)", "II.1", "II.8", "Art.13(8)"} <= set(reqs)
    assert reqs["I.2(a)"]["status"] == reqs["II.1"]["status"] == "met"
    assert reqs["I.2(e)"]["status"] == "met"  # 4.4-1: records sealed at rest
    assert reqs["I.2(j)"]["status"] == "partial"  # 4.6-2 and 4.6-3 are N
    statement = cra.psti_statement(doc, prod)
    assert statement["issuable"] and statement["blocking"] == []
    text = cra.render_psti_md(statement, doc)
    assert text.startswith("# UK PSTI: Statement of compliance") and "Jana Petersen" in text
    # The advisory evidence failing makes I.2(a) and II.1 gaps; a failing password test
    # stops the PSTI statement.
    sbom_test = next(t for t in all_pass if "test_advisories_check_fails" in t)
    pw_test = next(t for t in all_pass if "test_password_generator" in t)
    doc, prod = _doc(tmp_path, dict(all_pass, **{sbom_test: "failed", pw_test: "failed"}))
    reqs = {r["ref"]: r for r in cra.cra_map(doc)["requirements"]}
    assert reqs["I.2(a)"]["status"] == reqs["II.1"]["status"] == "gap"
    st = cra.psti_statement(doc, prod)
    assert not st["issuable"] and st["blocking"] == [
        "Schedule 1 paragraph 1 (No universal default passwords): provision 4.1-1 is FAIL"]
    # The project's own configuration: a draft naming every placeholder.
    doc, prod = _doc(tmp_path, all_pass, conformance.PRODUCT_PATH)
    st = cra.psti_statement(doc, prod)
    assert not st["issuable"] and "compliance.signatory is a placeholder in " \
        "conformance/product.toml" in st["blocking"]
    assert cra.render_psti_md(st, doc).startswith("# UK PSTI: DRAFT: not a statement")
    # The devices it covers come from the factory ledger; another model there blocks it.
    from host_tools.ledger import Ledger

    def device(i, model, when):
        return {"device_id": f"th-{i:012d}", "product": "iot-thermostat", "model": model,
                "board": "esp32", "cert_serial": f"{i:x}", "cert_sha256": f"{i:064x}",
                "provisioned": when, "station": "line-1"}
    with Ledger.open(tmp_path / "ledger.sqlite") as led:
        led.insert(device(1, "TH-1", 1796083200))  # 2026-12-01
        led.insert(device(2, "TH-1", 1796515200))  # 2026-12-06
        led.commit()
    good, _ = _doc(tmp_path, all_pass)
    st = cra.psti_statement(good, conformance.load_product(FILLED),
                            batch=cra.ledger_batch(tmp_path / "ledger.sqlite"))
    assert st["issuable"] and "Devices covered (factory ledger " in cra.render_psti_md(st, good)
    assert (st["batch"]["devices"], st["batch"]["first"], st["batch"]["last"]) == \
        (2, "2026-12-01", "2026-12-06")
    with Ledger.open(tmp_path / "ledger.sqlite") as led:
        led.insert(device(3, "TH-2", 1796515200))
        led.commit()
    st = cra.psti_statement(good, conformance.load_product(FILLED),
                            batch=cra.ledger_batch(tmp_path / "ledger.sqlite"))
    assert st["blocking"] == ["the factory ledger holds models TH-1, TH-2; the statement is "
                              "for model TH-1"]
    (tmp_path / "junit.xml").write_text(_junit(all_pass))
    code, out, _ = _iotctl(["report", "--junit", tmp_path / "junit.xml", "--config", FILLED,
                            "--format", "psti", "--ledger", tmp_path / "empty.sqlite"], capsys)
    assert code == 0 and "holds no device" in out
    # A statement fact missing from the configuration blocks it too.
    del prod["compliance"]
    assert "compliance.place is not set in conformance/product.toml" in \
        cra.psti_statement(doc, prod)["blocking"]
    # A map naming a provision the report lacks is refused.
    broken = cra.load_cra()
    broken["requirement"][0]["provisions"] = ["4.99-1"]
    with pytest.raises(UsageError, match="4.99-1"):
        cra.cra_map(doc, broken)
    (tmp_path / "junit.xml").write_text(_junit(all_pass))
    for fmt, head in (("cra", "# Regulation (EU) 2024/2847"), ("psti", "# UK PSTI: DRAFT")):
        code, out, _ = _iotctl(["report", "--junit", tmp_path / "junit.xml", "--format", fmt,
                                "-o", tmp_path / f"{fmt}.md"], capsys)
        assert code == 0 and (tmp_path / f"{fmt}.md").read_text().startswith(head)
