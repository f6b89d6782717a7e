"""The conformance report names what its evidence belongs to (commit, bundle version and
hashes) and does not call a provision supported while the facts it publishes are
placeholders (conformance/product.toml)."""

import copy
import hashlib
import json
import subprocess
import tomllib

import jsonschema
import pytest

from host_tools import bundle, keys
from host_tools.report import conformance, provenance
from tests.host.test_conformance import FILLED, REPO, _iotctl, _junit, _pytest

HELD = {"4.2-1", "4.2-2", "4.3-4", "4.8-1"}  # the rows whose published facts are placeholders


@pytest.fixture(scope="module")
def all_pass():
    pmap = conformance.load_map()
    return {t: "passed" for p in pmap["provision"] for t in p.get("evidence", [])}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    d = tmp_path_factory.mktemp("prov")
    keys.init(d / "keys")
    bundle.build(d / "keys", ["unix"], "1.4.2", 3, out=d / "app.bin")
    return d / "app.bin"


def _write_product(tmp_path, change):
    doc = tomllib.loads(FILLED.read_text())
    change(doc)
    lines = [f"placeholders = {json.dumps(doc.pop('placeholders'))}"]
    for table, values in doc.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp_path / "product.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_placeholder_facts_hold_a_claim_at_n(tmp_path, all_pass, capsys):
    pmap = conformance.load_map()
    claims = {p["ref"]: p["support"] for p in pmap["provision"]}
    # Every fact the map names is a key of the product configuration.
    shipped = conformance.load_product()
    assert provenance.check_facts(pmap, provenance.product_keys(shipped)) == []
    assert {p["ref"] for p in pmap["provision"] if p.get("facts")} == HELD
    junit = tmp_path / "junit.xml"
    junit.write_text(_junit(all_pass))
    validator = jsonschema.Draft202012Validator(json.loads(conformance.SCHEMA_PATH.read_text()))
    # The project's own configuration: the rows that publish its placeholders are N.
    text, doc = conformance.report(junit, "json")
    validator.validate(json.loads(text))
    rows = {r["ref"]: r for r in doc["provisions"]}
    assert {r for r, row in rows.items() if row["verdict"] != claims[r]} == HELD
    assert all(rows[r]["verdict"] == "N" and rows[r]["claimed"] == "Y" for r in HELD)
    assert "security.contact_email" in rows["4.2-1"]["facts_unset"]
    assert rows["4.2-3"]["verdict"] == "Y" and doc["summary"]["failed"] == []
    md, _ = conformance.report(junit, "md")
    line = next(x for x in md.splitlines() if x.startswith("| Provision 4.2-1 "))
    assert "N (claimed Y; placeholder facts)" in line and "security.contact_email" in line
    # A maker's configuration: all supported; one contact left on a reserved domain (RFC
    # 2606 .test) holds exactly its row; a key listed in `placeholders` does the same.
    _, doc = conformance.report(junit, "json", product_path=FILLED)
    assert {r["ref"]: r["verdict"] for r in doc["provisions"]} == claims
    one = _write_product(tmp_path, lambda d: d["security"].update(
        contact_email="security@maker.test"))
    _, doc = conformance.report(junit, "json", product_path=one)
    assert [(r["ref"], r["facts_unset"]) for r in doc["provisions"] if r["verdict"] == "N"
            and r["claimed"] == "Y"] == [("4.2-1", ["security.contact_email"])]
    listed = _write_product(tmp_path, lambda d: d.update(placeholders=["support.end_date"]))
    _, doc = conformance.report(junit, "json", product_path=listed)
    assert [r["ref"] for r in doc["provisions"] if r["facts_unset"]] == ["4.3-4"]
    # The schema refuses a held row reported Y, and an N for a claim with no unset facts.
    forged = copy.deepcopy(json.loads(conformance.report(junit, "json")[0]))
    held = next(r for r in forged["provisions"] if r["ref"] == "4.2-1")
    held["verdict"] = "Y"
    assert not validator.is_valid(forged)
    held["verdict"], held["facts_unset"] = "N", []
    assert not validator.is_valid(forged)
    # The map's facts are checked: a list of strings.
    broken = copy.deepcopy(pmap)
    broken["provision"][0]["facts"] = "security.contact_email"
    assert any("facts must be a list" in p for p in conformance.check_map(broken))
    code, _, err = _iotctl(["report", "--junit", junit], capsys)
    assert code == 0 and "placeholders: 4.2-1, 4.2-2, 4.3-4, 4.8-1" in err


def test_report_names_the_commit_and_the_bundle(tmp_path, all_pass, app, capsys):
    junit = tmp_path / "junit.xml"
    junit.write_text(_junit(all_pass))
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    manifest = bundle.parse(app.read_bytes()).manifest
    sha = hashlib.sha256(app.read_bytes()).hexdigest()
    text, doc = conformance.report(junit, "json", product_path=FILLED, bundle=app)
    p = doc["provenance"]
    assert p["commit"] == head and isinstance(p["dirty"], bool) and p["commit_from"] == "checkout"
    assert p["bundle"] == {"path": str(app), "product": "iot-thermostat", "version": "1.4.2",
                           "security_version": 3, "sha256": sha,
                           "sbom_sha256": manifest["sbom_sha256"]}
    jsonschema.Draft202012Validator(json.loads(conformance.SCHEMA_PATH.read_text())).validate(
        json.loads(text))
    out = tmp_path / "r.md"
    code, _, _ = _iotctl(["report", "--junit", junit, "--config", FILLED, "--bundle", app,
                          "-o", out, "-o", tmp_path / "r.html"], capsys)
    md = out.read_text()
    belongs = next(x for x in md.splitlines() if x.startswith("Belongs to: "))
    assert code == 0 and head in belongs and sha in belongs and "iot-thermostat 1.4.2" in belongs
    assert manifest["sbom_sha256"] in belongs
    assert sha in (tmp_path / "r.html").read_text()
    # Without --bundle the report says so; a file that is not a bundle is refused.
    _, doc = conformance.report(junit, "json", product_path=FILLED)
    assert doc["provenance"]["bundle"] is None
    (tmp_path / "junk.bin").write_bytes(b"not a bundle")
    code, _, err = _iotctl(["report", "--junit", junit, "--bundle", tmp_path / "junk.bin"],
                           capsys)
    assert code == 2 and "not a signed bundle" in err
    # Outside a git checkout there is no commit to name, and the report says so.
    assert provenance.git_commit(tmp_path) == {"commit": None, "dirty": None}


def test_the_run_records_the_commit_it_tested(tmp_path, all_pass):
    """tests/conftest.py writes the commit under test into the JUnit XML (also under xdist);
    the report names that commit, and says so when another one is checked out."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    junit = tmp_path / "run.xml"
    proc = _pytest(["-n", "2", f"--junitxml={junit}", "tests/host/test_report_provenance.py",
                    "-k", "no_test_has_this_name"], REPO)
    assert junit.exists(), proc.stdout[-2000:]
    meta = conformance.read_junit(junit).meta
    assert meta["commit"] == head and isinstance(meta["dirty"], bool)
    other = "b" * 40
    xml = _junit(all_pass).replace(
        '"ci">', f'"ci"><properties><property name="git_commit" value="{other}" />'
        '<property name="git_dirty" value="false" /></properties>', 1)
    junit.write_text(xml)
    text, doc = conformance.report(junit, "json", product_path=FILLED)
    jsonschema.Draft202012Validator(json.loads(conformance.SCHEMA_PATH.read_text())).validate(
        json.loads(text))
    p = doc["provenance"]
    assert (p["commit"], p["dirty"], p["commit_from"], p["checkout_commit"]) == \
        (other, False, "test run", head)
    md, _ = conformance.report(junit, "md", product_path=FILLED)
    belongs = next(x for x in md.splitlines() if x.startswith("Belongs to: "))
    assert f"commit {other} (recorded by the test run), NOT the commit checked out now " \
        f"({head})" in belongs
