"""Conformance evidence: Table A.1 of ETSI TS 103 645 from the provision map and a test run,
and the documents a maker publishes. Some of these tests are evidence in the map themselves."""

import ast
import copy
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

from host_tools import cli
from host_tools.cli import report as cmd_report
from host_tools.report import conformance, published
from host_tools.report.csaf import check_csaf
from tests.system import need

REPO = Path(__file__).resolve().parents[2]
SPEC = "etsi-ts-103-645-v1.1.1.txt"
ARTIFACTS = REPO / "build" / "artifacts"
FIRMWARE = REPO / "firmware"
CHROMIUM = "/usr/bin/chromium"
NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
# A maker's configuration with every fact set: conformance/product.toml keeps placeholders,
# and a provision that publishes a placeholder is reported N.
FILLED = REPO / "tests" / "data" / "product.toml"


def _pytest(args, cwd):
    """A separate pytest run (not a worker of this one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _iotctl(args, capsys):
    """Run `iotctl ARGS`; (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


# --- every provision of Table A.1 has a row --------------------------------------------------

TABLE_A1 = REPO / "conformance" / "table-a1.toml"


def _spec_text():
    """The specification's text where it is available (beside a checkout in ../shared/spec/,
    or named by ETSI_TS_103_645_TXT), else None: a user's clone has only table-a1.toml."""
    for path in (os.environ.get("ETSI_TS_103_645_TXT"), REPO.parent / "shared" / "spec" / SPEC,
                 REPO / "spec" / SPEC):
        if path and Path(path).is_file():
            return Path(path).read_text()
    return None


def _table_a1():
    """Table A.1 as committed data: [(ref, status)], {ref: note}, {note: condition}."""
    data = tomllib.loads(TABLE_A1.read_text())
    rows = [(r["ref"], r["status"]) for r in data["row"]]
    return rows, {r["ref"]: r["note"] for r in data["row"] if "note" in r}, \
        {int(k): v for k, v in data["notes"].items()}


def _number(ref):
    return tuple(int(x) for x in re.findall(r"\d+", ref))


def spec_table_a1(text):
    """[(ref, status)] of Table A.1 in numeric order, read from the specification's text without the
    map: the references the table lists; each status from the provision's own modal verb in
    clause 4 (shall: M, should: R), conditional when a note of the table names it; then checked
    against every status the table prints on the same line as its reference."""
    body, table = text.split("Table A.1: Implementation of provisions", 1)
    refs = re.findall(r"Provision (4\.\d+-\d+)", table)
    verbs = {}
    for ref, words in re.findall(r"^[ \t]*Provision (4\.\d+-\d+) (.+?)(?=\n\s*\n|\n\s*Provision )",
                                 body.split("4 Cyber security provisions", 1)[1], re.S | re.M):
        verbs[ref] = re.search(r"\b(shall|should)\b", words).group(1)
    conditional = set()
    for note in re.findall(r"NOTE \d: Provisions? (.+?) (?:is|are) conditional on", table, re.S):
        conditional |= set(re.findall(r"4\.\d+-\d+", note))
    derived = [(r, {"shall": "M", "should": "R"}[verbs[r]] + ("C" if r in conditional else ""))
               for r in sorted(refs, key=_number)]  # the text's table is not in order
    printed = {r: (s.replace("IR", "R") + ("C" if c else ""))
               for r, s, c in re.findall(r"Provision (4\.\d+-\d+) +(M|R|IR)\b( C)?", table)}
    assert printed and all(dict(derived)[r] == s for r, s in printed.items()), printed
    return derived


def test_every_provision_of_table_a1_has_a_row(record_property):
    table, notes, conditions = _table_a1()
    assert len(table) == 37 and len({r for r, _ in table}) == 37
    assert table == sorted(table, key=lambda row: _number(row[0]))
    assert all(s in ("M", "R", "MC", "RC") for _, s in table)
    assert {r for r, s in table if s.endswith("C")} == set(notes) and set(notes.values()) == \
        set(conditions) == {1, 2, 3}
    pmap = conformance.load_map()
    assert [(p["ref"], p["status"]) for p in pmap["provision"]] == table
    for p in pmap["provision"]:
        if p["status"] in ("MC", "RC"):  # the map's condition names the table's note
            assert re.search(r"note (\d)", p["condition"]).group(1) == str(notes[p["ref"]])
    # Where the specification's text is here, the committed table must be the one it prints.
    text = _spec_text()
    record_property("checked_against_spec_text", text is not None)
    if text is not None:
        assert spec_table_a1(text) == table
        t = text.split("Table A.1: Implementation of provisions", 1)[1]
        for n, cond in conditions.items():
            refs = re.search(rf"NOTE {n}: Provisions? (.+?) (?:is|are) conditional on (.+?)\.",
                             t, re.S)
            assert " ".join(refs.group(2).split()) == cond
            assert {r for r, m in notes.items() if m == n} == \
                set(re.findall(r"4\.\d+-\d+", refs.group(1)))


def test_the_map_follows_the_pro_forma():
    pmap = conformance.load_map()  # raises on any rule of check_map
    module = re.compile(r"\b(firmware|bootloader|host_tools|boards|conformance)/[\w./<>-]+")
    for p in pmap["provision"]:
        if p["support"] == "Y":
            assert p["evidence"] and module.search(p["measures"]), p["ref"]
        if p["support"] == "N/A":
            assert p["status"] in ("MC", "RC") and p["rationale"], p["ref"]
        if p["support"] == "N":
            assert p["detail"] and p["planned"], p["ref"]
    # UK PSTI Schedule 1 paragraph -> the EN 303 645 provisions it names (Schedule 2).
    psti = {p["ref"]: (p["crosswalk"]["psti"], p["crosswalk"]["en_v2"])
            for p in pmap["provision"] if "psti" in p["crosswalk"]}
    assert psti == {"4.1-1": (["Schedule 1 paragraph 1"], ["5.1-1", "5.1-2"]),
                    "4.2-1": (["Schedule 1 paragraph 2"], ["5.2-1"]),
                    "4.3-4": (["Schedule 1 paragraph 3"], ["5.3-13"])}
    en = [n for p in pmap["provision"] for n in p["crosswalk"]["en_v2"]]
    assert not set(en) & set(pmap["crosswalk_sources"]["en_v2_without_counterpart"])
    # The rules are enforced, not just followed.
    broken = copy.deepcopy(pmap)
    rows = {p["ref"]: p for p in broken["provision"]}
    rows["4.1-1"]["support"] = "N/A"
    rows["4.2-1"]["evidence"] = []
    rows["4.3-3"].pop("condition")
    rows["4.6-2"].pop("planned")
    rows["4.4-1"]["evidence"].append("not a node id")
    problems = conformance.check_map(broken)
    for ref, what in (("4.1-1", "N/A is allowed only"), ("4.2-1", "at least one evidence"),
                      ("4.3-3", "a condition goes"), ("4.6-2", "needs `planned`"),
                      ("4.4-1", "pytest node ids")):
        assert any(p.startswith(ref + ":") and what in p for p in problems), (ref, problems)


def test_every_evidence_test_exists():
    pmap = conformance.load_map()
    wanted = {t for p in pmap["provision"] for t in p.get("evidence", [])}
    files = sorted({t.split("::")[0] for t in wanted})
    proc = _pytest(["--collect-only", "-q", *files], REPO)
    collected = {line.strip() for line in proc.stdout.splitlines() if "::" in line}
    missing = [t for t in sorted(wanted) if t not in collected and
               ("[" in t or not any(c.startswith(t + "[") for c in collected))]
    assert not missing, f"evidence that pytest does not collect: {missing}\n{proc.stdout[-2000:]}"


# --- JUnit XML back to node ids --------------------------------------------------------------

DEMO = '''
import pytest

@pytest.mark.parametrize("p", ["a.b/c", "x::y", "plain"])
def test_param(p):
    pass

class TestGroup:
    def test_inside(self):
        pass

    @pytest.mark.parametrize("n", [1, 2])
    def test_fails_for_two(self, n):
        assert n == 1

def test_skipped():
    pytest.skip("not here")

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

def test_error(broken):
    pass
'''


def test_junit_of_a_real_xdist_run_maps_back_to_node_ids(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "tests" / "pkg").mkdir(parents=True)
    (tmp_path / "tests" / "pkg" / "test_demo.py").write_text(DEMO)
    junit = tmp_path / "junit.xml"
    _pytest(["-n", "2", "-q", f"--junitxml={junit}", "tests"], tmp_path)
    run = conformance.read_junit(junit)
    base = "tests/pkg/test_demo.py::"
    expect = {"test_param[a.b/c]": ("passed", 1), "test_param[x::y]": ("passed", 1),
              "test_param": ("passed", 3), "TestGroup::test_inside": ("passed", 1),
              "TestGroup::test_fails_for_two[1]": ("passed", 1),
              "TestGroup::test_fails_for_two[2]": ("failed", 1),
              "TestGroup::test_fails_for_two": ("failed", 2), "test_skipped": ("skipped", 1),
              "test_error": ("error", 1), "test_not_there": ("missing", 0),
              "test_param[nope]": ("missing", 0)}
    got = {k: (run.result(base + k)["outcome"], run.result(base + k)["cases"]) for k in expect}
    assert got == expect
    assert "fixture broke" in run.result(base + "test_error")["message"]
    assert run.meta["tests"] == 8 and run.meta["failed"] == 1 and run.meta["errors"] == 1


def _junit(cases):
    """JUnit XML as pytest writes it, from {node id: outcome}; classname and name are derived
    here independently of the module under test."""
    xml = ['<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
           f'tests="{len(cases)}" timestamp="2026-01-02T03:00:00" hostname="ci">']
    for nodeid, outcome in cases.items():
        file, _, rest = nodeid.partition("::")
        *classes, name = rest.split("::")
        classname = ".".join([file[:-3].replace("/", "."), *classes])
        body = {"passed": "", "failed": '<failure message="AssertionError: broken" />',
                "skipped": '<skipped type="pytest.skip" message="skipped" />',
                "error": '<error message="fixture failed" />'}[outcome]
        xml.append(f'<testcase classname="{classname}" name="{name}" time="0.5">{body}'
                   "</testcase>")
    return "".join(xml + ["</testsuite></testsuites>"])


@pytest.fixture
def all_pass():
    """{node id: "passed"} for every evidence test of the map."""
    pmap = conformance.load_map()
    return {t: "passed" for p in pmap["provision"] for t in p.get("evidence", [])}


def _report(tmp_path, cases, fmt="json", product=FILLED, bundle=None):
    path = tmp_path / "junit.xml"
    path.write_text(_junit(cases))
    text, doc = conformance.report(path, fmt, product_path=product, now=NOW, bundle=bundle)
    return text, doc


def _rows(doc):
    return {r["ref"]: r for r in doc["provisions"]}


def test_a_failing_or_missing_evidence_test_turns_its_row_into_fail(tmp_path, all_pass, capsys):
    pmap = conformance.load_map()
    claims = {p["ref"]: p["support"] for p in pmap["provision"]}
    _, doc = _report(tmp_path, all_pass)
    assert {r: v["verdict"] for r, v in _rows(doc).items()} == claims
    assert doc["summary"]["failed"] == []
    first = pmap["provision"][0]["evidence"][0]
    assert pmap["provision"][0]["ref"] == "4.1-1"
    for outcome in ("failed", "skipped", "error", "missing"):
        cases = dict(all_pass)
        if outcome == "missing":
            del cases[first]
        else:
            cases[first] = outcome
        _, doc = _report(tmp_path, cases)
        rows = _rows(doc)
        assert rows["4.1-1"]["verdict"] == "FAIL" and doc["summary"]["failed"] == ["4.1-1"]
        assert rows["4.1-1"]["evidence"][0]["outcome"] == outcome
        assert all(rows[r]["verdict"] == claims[r] for r in claims if r != "4.1-1")
    # One failing parametrization of an evidence test named without parameters.
    cases = dict(all_pass)
    base = "tests/e2e/test_push.py::test_refused_uploads_keep_the_running_version"
    del cases[base]
    cases[base + "[garbage-BAD_MAGIC]"] = "passed"
    cases[base + "[extra-EXTRA_BYTES]"] = "failed"
    _, doc = _report(tmp_path, cases)
    assert _rows(doc)["4.3-6"]["verdict"] == "FAIL"
    assert _rows(doc)["4.3-6"]["evidence"][2]["cases"] == 2
    # An N/A whose evidence fails is a failed claim too; an N's partial evidence never is.
    cases = dict(all_pass)
    cases["tests/e2e/test_sim.py::test_update_installs_into_b_and_confirms"] = "failed"
    cases["tests/host/test_esp.py::test_plan_lists_steps_and_touches_nothing"] = "failed"
    _, doc = _report(tmp_path, cases)  # ^ partial evidence of 4.6-2, an N
    assert doc["summary"]["failed"] == ["4.3-8", "4.3-9"]
    assert _rows(doc)["4.6-2"]["verdict"] == "N"
    # The command writes the report, then exits non-zero and names the row.
    cases = dict(all_pass, **{first: "failed"})
    (tmp_path / "junit.xml").write_text(_junit(cases))
    code, out, err = _iotctl(["report", "--junit", tmp_path / "junit.xml", "--format", "md"],
                             capsys)
    assert code == conformance.EvidenceFailed.exit_code and "4.1-1" in err
    line = next(x for x in out.splitlines() if x.startswith("| Provision 4.1-1 "))
    assert "**FAIL** (claimed Y)" in line and f"failed: `{first}`" in line
    (tmp_path / "junit.xml").write_text(_junit(all_pass))
    code, out, err = _iotctl(["report", "--junit", tmp_path / "junit.xml"], capsys)
    assert code == 0 and "FAIL" not in out.split("| Reference |")[1]


def test_json_report_validates_against_the_shipped_schema(tmp_path, all_pass):
    schema = json.loads(conformance.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    first = next(iter(all_pass))
    for cases in (all_pass, dict(all_pass, **{first: "failed"})):
        text, _ = _report(tmp_path, cases, "json")
        validator.validate(json.loads(text))
    doc = json.loads(text)
    # The schema itself refuses a supported row without passing evidence, and N/A on M.
    for ref, change in (("4.1-1", {"verdict": "Y"}), ("4.4-1", {"claimed": "N/A",
                                                                "verdict": "N/A"}),
                        ("4.1-1", {"verdict": "N"}), ("4.2-3", {"verdict": "FAIL"})):
        forged = copy.deepcopy(doc)
        _rows(forged)[ref].update(change)
        assert not validator.is_valid(forged), (ref, change)


# --- the HTML report in a browser ------------------------------------------------------------

def test_html_report_renders_in_chromium(tmp_path, all_pass):
    from playwright.sync_api import sync_playwright

    need(CHROMIUM, "chromium")
    first = next(iter(all_pass))
    html, doc = _report(tmp_path, dict(all_pass, **{first: "failed"}), "html")
    page_file = tmp_path / "conformance.html"
    page_file.write_text(html)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "conformance-report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(page_file.as_uri())
            rows = page.locator("tr.provision")
            assert rows.count() == 37 == len(doc["provisions"])
            assert page.locator("tr.clause").count() == 13
            fail = page.locator("tr.provision.verdict-FAIL")
            assert fail.count() == 1 and fail.get_attribute("data-ref") == "4.1-1"
            fail.scroll_into_view_if_needed()
            assert fail.is_visible() and fail.locator(".badge").inner_text() == "FAIL"
            red = fail.locator("td.detail").evaluate("e => getComputedStyle(e).backgroundColor")
            assert red == "rgb(253, 226, 225)"
            ok = page.locator('tr.provision[data-ref="4.2-1"] .badge')
            assert ok.inner_text() == "Y"
            assert ok.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(31, 122, 58)"
            assert page.locator("p.alert.fail").is_visible()
            assert "1 FAIL" in page.locator("p.verdicts").inner_text()
            page.locator('tr.provision[data-ref="4.1-1"] td.evidence a').first.click()
            assert "failed" in page.locator("#evidence li.o-failed").inner_text()
            page.evaluate("window.scrollTo(0, 0)")  # the sticky header back at the top
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


# --- the documents a maker publishes ---------------------------------------------------------

@pytest.fixture(scope="module")
def docs():
    return published.render_docs(conformance.load_product(), today=NOW.date())


def test_security_policy_names_a_contact_and_timelines(docs):
    product = conformance.load_product()
    sec = product["security"]
    text = docs["SECURITY.md"]
    assert re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", sec["contact_email"])
    assert sec["security_txt"].endswith("/.well-known/security.txt")  # RFC 9116
    for value in (sec["contact_email"], sec["report_url"], sec["security_txt"],
                  sec["policy_url"], sec["advisories_url"], product["manufacturer"]["name"]):
        assert value in text
    rows = dict(re.findall(r"^\| (.+?) \| (.+?) \|$", text, re.M))
    assert rows["We acknowledge your report"] == f"within {sec['acknowledge_within_days']} days"
    assert rows["We tell you where it stands"] == \
        f"at least every {sec['status_update_every_days']} days until it is resolved"
    assert f"within {sec['fix_within_days']} days" in rows["A fix is available"]
    assert f"after {sec['disclose_after_days']} days" in rows["We publish an advisory"]
    assert "English" in text and "free of charge" in text and "personal" in text
    assert 0 < sec["acknowledge_within_days"] <= sec["triage_within_days"] \
        <= sec["fix_within_days"] <= 90 and sec["critical_fix_within_days"] <= 30
    # What the device serves (security.txt, Security page) says the same.
    disclosure = FIRMWARE / "disclosure.json"
    if disclosure.exists():
        d = json.loads(disclosure.read_text())
        assert d["contact"][0] == "mailto:" + sec["contact_email"]
        assert sec["report_url"] in d["contact"] and d["canonical"] == sec["security_txt"]
        assert d["policy"] == sec["policy_url"] and d["fix_days"] == sec["fix_within_days"]
        assert d["maker"] == product["manufacturer"]["name"]
        assert d["service"] == product["privacy"]["service"]
        assert d["support_end"] == product["support"]["end_date"]


def test_repository_security_md_is_the_rendered_policy(docs):
    assert (REPO / "SECURITY.md").read_text() == docs["SECURITY.md"], \
        "regenerate it: iotctl docs -o . SECURITY.md"


def test_support_period_policy_states_an_end_date_and_reasons(docs):
    product = conformance.load_product()
    text = docs["support-period.md"]
    end = datetime.date.fromisoformat(product["support"]["end_date"])
    assert f"until at least **{end.day} {end:%B %Y}**" in text and end.isoformat() in text
    assert " ".join(product["support"]["reasons"].split()) in " ".join(text.split())
    assert " ".join(product["support"]["after_end"].split()) in " ".join(text.split())
    assert "never" in text and "shorten" in text
    assert product["product"]["model"] in text and "GET /api/health" in text
    assert end.isoformat() in docs["SECURITY.md"] or f"{end:%B %Y}" in docs["SECURITY.md"]


def test_privacy_notice_lists_what_the_firmware_keeps(docs):
    product = conformance.load_product()
    text = docs["privacy-notice.md"]
    notice = json.loads((FIRMWARE / "notice.json").read_text())  # what the device's pages show
    found = {"INVENTORY": notice["inventory"], "PURPOSES": notice["purposes"],
             "THIRD_PARTIES": notice["third_parties"]}
    for item in found["INVENTORY"]:
        assert f"| {item[0]} |" in text
    for key, title, _ in found["PURPOSES"]:
        assert f"**{title}** (`{key}`)" in text
    assert found["THIRD_PARTIES"] in text
    assert "{maker}" not in text and "{service}" not in text
    assert product["privacy"]["service"] in text and product["privacy"]["contact_email"] in text
    # What the thermostat stores about its owner is in the inventory: the schedule, the password.
    settings = ast.parse((FIRMWARE / "thermostat.py").read_text())
    defaults = next(ast.literal_eval(n.value) for n in settings.body if isinstance(n, ast.Assign)
                    and getattr(n.targets[0], "id", "") == "DEFAULTS")
    assert "schedule" in defaults and "| Heating schedule" in text and "| Password" in text


def test_privacy_notice_purposes_are_the_ones_the_firmware_asks_for(tmp_path):
    """notice.json and privacy.KEYS must agree: a purpose the pages offer but the device does
    not record (or the reverse) stops the report with the reason."""
    fw = tmp_path / "firmware"
    shutil.copytree(FIRMWARE, fw)
    assert [p[0] for p in published.firmware_privacy(fw)["PURPOSES"]] == \
        ["history", "telemetry", "diagnostics"]
    notice = json.loads((fw / "notice.json").read_text())
    notice["purposes"] = notice["purposes"][::-1]
    (fw / "notice.json").write_text(json.dumps(notice))
    with pytest.raises(conformance.ConformanceError, match="purposes must be"):
        published.firmware_privacy(fw)
    (fw / "notice.json").write_text("{not json")
    with pytest.raises(conformance.ConformanceError, match="not JSON"):
        published.firmware_privacy(fw)


def test_interfaces_list_is_the_checked_one(docs):
    """The published list is docs/interfaces.md, which tests/e2e/test_surface.py compares with
    a running device; the cloud link is listed as not wired exactly while the app lacks it."""
    source = (REPO / "docs" / "interfaces.md").read_text()
    text = docs["interfaces.md"]
    body = source.split("\n", 1)[1].strip()
    assert body in text and conformance.load_product()["product"]["model"] in text
    assert re.search(r"^\| `tcp/https` \| TCP 443", text, re.M)
    mqtt = next(line for line in text.splitlines() if line.startswith("| `tcp/mqtt`"))
    wired = "mqtt" in _reachable()
    assert ("not wired" in mqtt) == (not wired), f"docs/interfaces.md is out of date: {mqtt}"


def test_csaf_advisory_template_has_the_required_structure(docs):
    doc = json.loads(docs["csaf-advisory-template.json"])
    d = doc["document"]
    assert set(doc) == {"document", "product_tree", "vulnerabilities"}
    assert d["category"] == "csaf_security_advisory" and d["csaf_version"] == "2.0"
    for key in ("category", "csaf_version", "publisher", "title", "tracking"):
        assert key in d
    assert d["publisher"]["category"] == "vendor"
    assert d["publisher"]["namespace"].startswith("https://")
    t = d["tracking"]
    assert {"current_release_date", "id", "initial_release_date", "revision_history", "status",
            "version"} <= set(t) and t["status"] == "draft" and t["revision_history"]
    assert datetime.datetime.fromisoformat(t["initial_release_date"].replace("Z", "+00:00"))
    assert any(n["category"] in ("description", "details", "general", "summary")
               for n in d["notes"])
    assert any(r["category"] == "external" for r in d["references"])
    ids = set(re.findall(r'"product_id": "([^"]+)"', json.dumps(doc["product_tree"])))
    for v in doc["vulnerabilities"]:
        assert v["notes"] and v["product_status"]
        used = {i for group in v["product_status"].values() for i in group}
        used |= {i for r in v["remediations"] for i in r["product_ids"]}
        assert used <= ids
    assert check_csaf(doc) == []
    # The checker refuses what the CSAF 2.0 schema and the advisory profile refuse.
    for path, value, what in ((("product_tree",), None, "/product_tree is required"),
                              (("vulnerabilities", 0, "notes"), None, "notes is required"),
                              (("document", "tracking", "status"), "done", "tracking/status"),
                              (("document", "csaf_version"), "2.1", "csaf_version"),
                              (("vulnerabilities", 0, "product_status", "fixed"), ["nope"],
                               "product_id nope is not defined")):
        broken = copy.deepcopy(doc)
        parent = broken
        for key in path[:-1]:
            parent = parent[key]
        if value is None:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        assert any(what in p for p in check_csaf(broken)), (path, what)


# --- facts behind claims in the map ----------------------------------------------------------

_SECRET_NAME = re.compile(r"(?i)passw|secret|token|api_?key|private_?key|psk|credential")


def test_device_code_holds_no_credentials():
    """No credential or private key in the device software (4.4-1): no key files, no PEM
    blocks, no literal assigned to a credential-like name (a literal without spaces, slashes
    or dots, which messages and paths have)."""
    found = []
    for top in ("firmware", "bootloader", "boards"):
        for f in sorted((REPO / top).rglob("*")):
            if f.suffix in (".pem", ".key", ".der", ".p12", ".pfx", ".crt"):
                found.append(str(f))
            if f.suffix != ".py":
                continue
            for node in ast.walk(ast.parse(f.read_text(), str(f))):
                if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
                    raw = node.value if isinstance(node.value, bytes) else node.value.encode()
                    if b"-----BEGIN" in raw or b"PRIVATE KEY" in raw:
                        found.append(f"{f}:{node.lineno}: PEM block")
                pairs = []
                if isinstance(node, ast.Assign):
                    pairs = [(getattr(t, "id", getattr(t, "attr", "")), node.value)
                             for t in node.targets]
                elif isinstance(node, ast.keyword) and node.arg:
                    pairs = [(node.arg, node.value)]
                elif isinstance(node, ast.Dict):
                    pairs = [(k.value, v) for k, v in zip(node.keys, node.values)
                             if isinstance(k, ast.Constant) and isinstance(k.value, str)]
                for name, value in pairs:
                    if _SECRET_NAME.search(name) and isinstance(value, ast.Constant) \
                            and isinstance(value.value, (str, bytes)) and len(value.value) >= 4 \
                            and not re.search(rb"[\s/.]", value.value if isinstance(
                                value.value, bytes) else value.value.encode()):
                        found.append(f"{f}:{value.lineno}: {name} = {value.value!r}")
    assert not found, found


def _imports(py):
    """Modules `py` imports: import statements, and __import__ of a name listed in a module-
    level tuple (pages.py loads its page modules on demand and drops them after)."""
    out = set()
    tree = ast.parse(py.read_text(), str(py))
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module:
            out.add(n.module.split(".")[0])
    if "__import__(" in py.read_text():
        for n in ast.walk(tree):
            if isinstance(n, ast.Constant) and isinstance(n.value, str) \
                    and (FIRMWARE / f"{n.value}.py").exists():
                out.add(n.value)
    return out


def _reachable(entry="app"):
    """Modules of firmware/ that `entry` imports, directly or not."""
    seen, todo = set(), [entry]
    while todo:
        name = todo.pop()
        py = FIRMWARE / f"{name}.py"
        if name not in seen and py.exists():
            seen.add(name)
            todo += sorted(_imports(py))
    return seen


def test_every_shipped_module_is_used():
    """Code minimized (4.6-4): every module the bundle ships is reachable from the entry point
    and every data file it ships is read by name; nothing else is in firmware/."""
    modules = {p.stem for p in FIRMWARE.glob("*.py")}
    assert _reachable() == modules, f"shipped but never imported: {modules - _reachable()}"
    code = "".join(p.read_text() for p in FIRMWARE.glob("*.py"))
    for f in FIRMWARE.iterdir():
        if f.is_dir() or f.suffix == ".py" or f.name == "manifest.json":  # not shipped
            continue
        assert f'"{f.name}"' in code or f"/{f.name}" in code, f"{f.name} is shipped, never read"


# --- the commands ----------------------------------------------------------------------------

def test_report_and_docs_commands(tmp_path, all_pass, capsys):
    code, out, _ = _iotctl(["report", "--help"], capsys)
    assert code == 0 and "--junit" in out and "--format" in out
    code, _, err = _iotctl(["report", "--junit", tmp_path / "none.xml"], capsys)
    assert code == 2 and "make test" in err
    (tmp_path / "junit.xml").write_text(_junit(all_pass))
    outs = [tmp_path / "out" / f"r.{s}" for s in ("md", "html", "json")]
    code, _, err = _iotctl(["report", "--junit", tmp_path / "junit.xml",
                            *[x for o in outs for x in ("-o", o)]], capsys)
    assert code == 0 and "placeholders left" in err
    assert outs[0].read_text().startswith("# ETSI TS 103 645 V1.1.1, Table A.1")
    assert outs[1].read_text().startswith("<!DOCTYPE html>")
    assert json.loads(outs[2].read_text())["summary"]["verdicts"]["FAIL"] == 0
    code, _, err = _iotctl(["report", "--junit", tmp_path / "junit.xml", "-o",
                            tmp_path / "r.txt"], capsys)
    assert code == 2 and "--format" in err
    code, out, _ = _iotctl(["docs", "-o", tmp_path / "docs"], capsys)
    assert code == 0 and sorted(p.name for p in (tmp_path / "docs").iterdir()) == \
        sorted(published.DOCUMENTS)
    code, _, err = _iotctl(["docs", "-o", tmp_path / "d2", "README.md"], capsys)
    assert code == 2 and "unknown document" in err


def test_commands_are_registered_in_iotctl():
    assert [c.name for c in cmd_report.COMMANDS] == ["report", "docs"]
    assert all(cli.cli.commands[c.name] is c for c in cmd_report.COMMANDS)
