"""Conformance evidence: Table A.1 of ETSI TS 103 645 V1.1.1, each claim proved by a test run.

The provision map (conformance/provisions.toml) says, provision by provision, what the product
does and which tests prove it; a JUnit XML file (`pytest --junitxml`) says which of those tests
passed. A row claimed "Y" is reported as supported only when every one of its tests passed in
that run; otherwise its verdict is FAIL. So is an N/A whose evidence (that the condition does not
apply) failed. The module also renders the documents a maker publishes (conformance/templates/)
from conformance/product.toml and facts read from firmware/.
"""

import ast
import datetime
import html
import json
import re
import string
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

from . import provenance as prov
from .csaf import check_csaf  # noqa: F401  (the documents' CSAF template is checked with it)
from .errors import IotctlError, UsageError
from .mpy import REPO

CONFORMANCE = REPO / "conformance"
MAP_PATH = CONFORMANCE / "provisions.toml"
PRODUCT_PATH = CONFORMANCE / "product.toml"
TEMPLATES = CONFORMANCE / "templates"
SCHEMA_PATH = CONFORMANCE / "report.schema.json"
FIRMWARE = REPO / "firmware"
DOCS = REPO / "docs"
REPORT_FORMAT = "iot-conformance-report/1"

STATUSES = ("M", "R", "MC", "RC")
SUPPORT = ("Y", "N", "N/A")
OUTCOMES = ("missing", "error", "failed", "skipped", "passed")  # worst first
DOCUMENTS = ("SECURITY.md", "support-period.md", "privacy-notice.md", "interfaces.md",
             "csaf-advisory-template.json")
_REF = re.compile(r"4\.(\d+)-(\d+)")
_NODE = re.compile(r"tests/[\w./-]+\.py::\S.*")
# Reserved names (RFC 2606): example.com/.org/.net and the .example, .test, .invalid and
# .localhost top-level domains are never a maker's real address.
_EXAMPLE = re.compile(r"^MAKER\b|PLACEHOLDER|\bexample\.(com|org|net)\b|"
                      r"\.(example|test|invalid|localhost)\b(?![.-])")


class ConformanceError(UsageError):
    """The map, the product configuration, a template or the JUnit file is unusable."""


class EvidenceFailed(IotctlError):
    """A claim (Y, or N/A with evidence) is not proved by the run; `refs` names the rows."""

    exit_code = 12
    kind = "evidence_failed"

    def __init__(self, refs):
        super().__init__(f"{len(refs)} claimed provision(s) without passing evidence in this "
                         f"run: {', '.join(refs)}")
        self.refs = refs


def _toml(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConformanceError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConformanceError(f"{path} is not valid TOML: {e}") from None


def _text(v):
    return isinstance(v, str) and v.strip() != ""


def clause(ref):
    return ref.split("-")[0]


# --- the provision map ---------------------------------------------------------------------

def check_map(doc):
    """Every rule of the pro forma and of the map format; returns the problems (none: valid)."""
    out = []
    clauses = doc.get("clauses", {})
    seen = set()
    for p in doc.get("provision", []):
        ref = p.get("ref")
        if not isinstance(ref, str) or not _REF.fullmatch(ref):
            out.append(f"{ref!r}: ref must look like 4.N-M")
            continue
        bad = [] if ref not in seen else ["appears twice"]
        seen.add(ref)
        status, support, ev = p.get("status"), p.get("support"), p.get("evidence", [])
        conditional = status in ("MC", "RC")
        if clause(ref) not in clauses:
            bad.append(f"clause {clause(ref)} has no title in [clauses]")
        if status not in STATUSES:
            bad.append(f"status must be one of {', '.join(STATUSES)}")
        if support not in SUPPORT:
            bad.append(f"support must be one of {', '.join(SUPPORT)}")
        if not _text(p.get("text")):
            bad.append("text is missing")
        if conditional != _text(p.get("condition")):
            bad.append("a condition goes with status MC or RC, and only there")
        if support == "N/A" and not conditional:
            bad.append("N/A is allowed only for a conditional provision (MC, RC)")
        need = {"Y": ("measures",), "N": ("detail", "planned"), "N/A": ("rationale",)}
        for key in need.get(support, ()):
            if not _text(p.get(key)):
                bad.append(f"support {support} needs `{key}`")
        if not isinstance(ev, list) or not all(isinstance(t, str) and _NODE.fullmatch(t)
                                               for t in ev):
            bad.append("evidence must be a list of pytest node ids (tests/...py::name)")
        elif len(set(ev)) != len(ev):
            bad.append("evidence names a test twice")
        elif support == "Y" and not ev:
            bad.append("support Y needs at least one evidence test")
        cw = p.get("crosswalk", {})
        for key in ("en_v2", "en_v3", "psti"):
            if key == "psti" and key not in cw:
                continue
            if not isinstance(cw.get(key), list) or not all(isinstance(x, str) for x in cw[key]):
                bad.append(f"crosswalk.{key} must be a list of provision numbers")
            if not isinstance(cw.get(key + "_verified"), bool):
                bad.append(f"crosswalk.{key}_verified must be true or false")
        out += [f"{ref}: {b}" for b in bad]
    if not seen:
        out.append("no [[provision]] rows")
    return out + prov.check_facts(doc, None)


def load_map(path=MAP_PATH):
    """The provision map, checked; raises ConformanceError naming every problem."""
    doc = _toml(path)
    problems = check_map(doc)
    if problems:
        raise ConformanceError(f"{path}: " + "; ".join(problems))
    return doc


# --- the test run --------------------------------------------------------------------------

def junit_key(nodeid):
    """The (classname, name) that pytest's junitxml writes for `nodeid`: the file path with
    dots for slashes and no .py, then any classes; the parameters stay with the name."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def _worst(a, b):
    return a if OUTCOMES.index(a) <= OUTCOMES.index(b) else b


class Run:
    """A test run read from JUnit XML: the outcome of each test case, and the run's totals."""

    def __init__(self, cases, meta):
        self.cases = cases  # {(classname, name): {"outcome", "message", "time_s"}}
        self.meta = meta
        self._by_class = {}
        for cls, name in cases:
            self._by_class.setdefault(cls, []).append(name)

    def _hits(self, cls, name, whole):
        def ok(n):
            return n == name or (whole and n.startswith(name + "["))
        hits = [(cls, n) for n in self._by_class.get(cls, ()) if ok(n)]
        if hits:
            return hits
        # Run from another root directory, or with a junit_prefix: one class that differs
        # only by leading package names.
        alt = [c for c in self._by_class if (c.endswith("." + cls) or cls.endswith("." + c))
               and any(ok(n) for n in self._by_class[c])]
        return [(alt[0], n) for n in self._by_class[alt[0]] if ok(n)] if len(alt) == 1 else []

    def result(self, nodeid):
        """{test, outcome, cases, message, time_s} for a node id; an id without parameters
        covers all its parametrizations and counts as the worst of them."""
        cls, name = junit_key(nodeid)
        hits = self._hits(cls, name, "[" not in nodeid)
        out = {"test": nodeid, "outcome": "missing", "cases": len(hits), "message": None,
               "time_s": 0.0}
        if not hits:
            out["message"] = "not in this run"
            return out
        out["outcome"] = "passed"
        for key in sorted(hits):
            case = self.cases[key]
            out["time_s"] += case["time_s"]
            if _worst(case["outcome"], out["outcome"]) != out["outcome"]:
                out["outcome"] = case["outcome"]
                label = key[1] + ": " if len(hits) > 1 else ""
                out["message"] = label + (case["message"] or case["outcome"])
        out["time_s"] = round(out["time_s"], 3)
        return out


def read_junit(path):
    """Read pytest's JUnit XML (also written with pytest-xdist) into a Run."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise ConformanceError(f"{path} does not exist: `make test` writes it "
                               "(pytest --junitxml)") from None
    except (ET.ParseError, OSError) as e:
        raise ConformanceError(f"{path} is not JUnit XML: {e}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise ConformanceError(f"{path} is not JUnit XML (root element <{root.tag}>)")
    kinds = {"failure": "failed", "error": "error", "skipped": "skipped"}
    cases = {}
    for tc in root.iter("testcase"):
        outcome, message = "passed", None
        for child in tc:
            kind = kinds.get(child.tag)
            if kind and _worst(kind, outcome) == kind:
                outcome = kind
                message = (child.get("message") or child.text or kind).strip()[:400]
        key = (tc.get("classname") or "", tc.get("name") or "")
        prev = cases.get(key)  # a teardown error is a second <testcase> for the same test
        time_s = float(tc.get("time") or 0) + (prev["time_s"] if prev else 0.0)
        if prev and _worst(prev["outcome"], outcome) == prev["outcome"]:
            outcome, message = prev["outcome"], prev["message"]
        cases[key] = {"outcome": outcome, "message": message, "time_s": time_s}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    count = {k: sum(c["outcome"] == k for c in cases.values())
             for k in ("passed", "failed", "error", "skipped")}
    meta = {"junit": str(path), "timestamp": suite.get("timestamp") if suite is not None else None,
            "hostname": suite.get("hostname") if suite is not None else None,
            "tests": len(cases), "passed": count["passed"], "failed": count["failed"],
            "errors": count["error"], "skipped": count["skipped"],
            # tests/conftest.py records the commit under test (absent: an older run)
            "commit": props.get("git_commit") or None,
            "dirty": {"true": True, "false": False}.get(props.get("git_dirty"))}
    return Run(cases, meta)


# --- the report ----------------------------------------------------------------------------

def _crosswalk(cw):
    out = {"en_303_645_v2": {"provisions": cw["en_v2"], "verified": cw["en_v2_verified"]},
           "en_303_645_v3": {"provisions": cw["en_v3"], "verified": cw["en_v3_verified"]},
           "uk_psti": None, "note": cw.get("note")}
    if "psti" in cw:
        out["uk_psti"] = {"requirements": cw["psti"], "verified": cw["psti_verified"]}
    return out


def evaluate(pmap, run):
    """One row per provision with its verdict: the claim, unless a claim with evidence is
    not proved by the run (any test failed, errored, skipped or missing): then FAIL."""
    rows = []
    for p in pmap["provision"]:
        evidence = [run.result(t) for t in p.get("evidence", [])]
        claimed = p["support"]
        verdict = claimed
        if claimed in ("Y", "N/A") and any(e["outcome"] != "passed" for e in evidence):
            verdict = "FAIL"
        if claimed == "Y" and not evidence:
            verdict = "FAIL"
        rows.append({
            "ref": p["ref"], "clause": clause(p["ref"]),
            "clause_title": pmap["clauses"][clause(p["ref"])], "status": p["status"],
            "condition": p.get("condition"), "text": p["text"], "claimed": claimed,
            "verdict": verdict, "measures": p.get("measures"), "detail": p.get("detail"),
            "rationale": p.get("rationale"), "planned": p.get("planned"),
            "evidence": evidence, "crosswalk": _crosswalk(p.get("crosswalk", {}))})
    return rows


def build_report(pmap, run, product=None, now=None, provenance=None, bundle=None):
    """The report as a JSON-ready dict (conformance/report.schema.json). `provenance`: the
    commit and bundle the evidence belongs to; by default the commit the run recorded (else
    the checkout's) and `bundle`. A claim whose published facts are placeholders is N."""
    rows = prov.apply_unset_facts(evaluate(pmap, run), pmap,
                                  placeholders(product) if product else [])
    now = now or datetime.datetime.now(datetime.timezone.utc)
    count = {k: sum(r["verdict"] == k for r in rows) for k in ("Y", "N", "N/A", "FAIL")}
    claimed = {k: sum(r["claimed"] == k for r in rows) for k in SUPPORT}
    sources = {k: v for k, v in pmap.get("crosswalk_sources", {}).items()
               if isinstance(v, str)}
    return {
        "format": REPORT_FORMAT,
        "standard": {k: pmap[k] for k in ("standard", "version", "table", "title")},
        "generated": now.isoformat(timespec="seconds"),
        "product": None if product is None else {
            "name": product["product"]["name"], "model": product["product"]["model"],
            "manufacturer": product["manufacturer"]["name"]},
        "run": run.meta,
        "provenance": provenance if provenance is not None else prov.provenance(bundle,
                                                                                 run=run.meta),
        "summary": {"provisions": len(rows), "claimed": claimed, "verdicts": count,
                    "failed": [r["ref"] for r in rows if r["verdict"] == "FAIL"]},
        "placeholders": placeholders(product) if product else [],
        "crosswalk_sources": sources,
        "en_v2_without_counterpart": pmap.get("crosswalk_sources", {})
        .get("en_v2_without_counterpart", []),
        "provisions": rows,
    }


def render(report, fmt):
    """The report as md, html or json text."""
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if fmt == "md":
        return _markdown(report)
    if fmt == "html":
        return _html(report)
    raise ConformanceError(f"unknown report format {fmt!r} (md, html or json)")


def _run_line(r):
    run = r["run"]
    when = f", run {run['timestamp']}" if run.get("timestamp") else ""
    return (f"{run['junit']}{when}: {run['tests']} tests, {run['passed']} passed, "
            f"{run['failed']} failed, {run['errors']} errors, {run['skipped']} skipped")


def _provenance_line(r):
    p = r["provenance"]
    out = f"commit {p['commit'] or 'unknown (not a git checkout)'}"
    if p["dirty"]:
        out += " with uncommitted changes"
    out += {"test run": " (recorded by the test run)", "checkout": " (checked out when the "
            "report was made; the run recorded none)"}.get(p["commit_from"], "")
    if p["checkout_commit"]:
        out += f", NOT the commit checked out now ({p['checkout_commit']})"
    b = p["bundle"]
    if b:
        out += (f"; bundle {b['path']}: {b['product']} {b['version']} (security version "
                f"{b['security_version']}), SHA-256 {b['sha256']}, SBOM SHA-256 "
                f"{b['sbom_sha256'] or 'none bound'}")
    else:
        out += "; no bundle named (iotctl report --bundle)"
    return out


def _verdict_line(r):
    v, s = r["summary"]["verdicts"], r["summary"]
    return (f"{s['provisions']} provisions: {v['Y']} supported (Y, every evidence test passed), "
            f"{v['FAIL']} FAIL (claimed, not proved by this run), {v['N']} not supported (N), "
            f"{v['N/A']} not applicable (N/A)")


def _detail_parts(row):
    parts = []
    if row["condition"]:
        parts.append(("Condition", row["condition"]))
    if row["claimed"] == "Y":
        parts.append(("Measures", row["measures"]))
    if row.get("facts_unset"):
        parts.append(("Not supported until set", "these published facts are placeholders in "
                      "conformance/product.toml: " + ", ".join(row["facts_unset"])))
    if row["detail"]:
        parts.append(("Not supported" if row["claimed"] == "N" else "Note", row["detail"]))
    if row["rationale"]:
        parts.append(("Not applicable", row["rationale"]))
    if row["planned"]:
        parts.append(("Planned", row["planned"]))
    return parts


def _cross_parts(row):
    cw = row["crosswalk"]

    def one(label, entry, key, unverified=" (unverified)", verified=""):
        if not entry or not entry[key]:
            return f"{label}: none"
        return f"{label}: {', '.join(entry[key])}" + (verified if entry["verified"]
                                                        else unverified)
    parts = [one("EN V2.1.1", cw["en_303_645_v2"], "provisions"),
             one("EN V3.1.3", cw["en_303_645_v3"], "provisions",
                 " (number checked in Table B.1; wording unverified)",
                 " (number and wording checked)"),
             one("UK PSTI", cw["uk_psti"], "requirements")]
    return parts + ([cw["note"]] if cw["note"] else [])


def _md(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def _markdown(r):
    std = r["standard"]
    out = [f"# {std['standard']} V{std['version']}, Table {std['table']}: {std['title']}", ""]
    if r["product"]:
        p = r["product"]
        out.append(f"Product: {p['name']}, model {p['model']} ({p['manufacturer']})  ")
    out += [f"Evidence: {_run_line(r)}  ", f"Belongs to: {_provenance_line(r)}  ",
            f"Generated: {r['generated']}", "",
            f"**{_verdict_line(r)}.**", ""]
    if r["summary"]["failed"]:
        out += [f"> **FAIL**: {', '.join(r['summary']['failed'])}: claimed, but not every "
                "evidence test passed in this run.", ""]
    if r["placeholders"]:
        out += ["> Placeholders left in conformance/product.toml (replace before publishing): "
                + ", ".join(r["placeholders"]), ""]
    out += ["| Reference | Status | Support | Detail | Evidence (this run) | Crosswalk |",
            "|---|---|---|---|---|---|"]
    current = None
    for row in r["provisions"]:
        if row["clause"] != current:
            current = row["clause"]
            out.append(f"| **{current} {_md(row['clause_title'])}** | | | | | |")
        support = {"FAIL": f"**FAIL** (claimed {row['claimed']})"}.get(row["verdict"],
                                                                      row["verdict"])
        if row["verdict"] != row["claimed"] and row["verdict"] == "N":
            support = "N (claimed Y; placeholder facts)"
        detail = "<br>".join(f"*{k}:* {_md(v)}" for k, v in _detail_parts(row))
        partial = "partial: " if row["claimed"] == "N" and row["evidence"] else ""
        ev = "<br>".join(f"{e['outcome']}: `{_md(e['test'])}`" for e in row["evidence"])
        out.append(f"| Provision {row['ref']} | {row['status']} | {support} | {detail} | "
                   f"{partial}{ev or '-'} | {'<br>'.join(_md(c) for c in _cross_parts(row))} |")
    bad = {}
    for row in r["provisions"]:
        for e in row["evidence"]:
            if e["outcome"] != "passed":
                bad.setdefault(e["test"], (e, []))[1].append(row["ref"])
    if bad:
        out += ["", "## Evidence that did not pass", ""]
        out += [f"- `{t}` ({', '.join(refs)}): {e['outcome']}: {_md(e['message'] or '')[:240]}"
                for t, (e, refs) in bad.items()]
    out += ["", "## Crosswalk sources", ""]
    out += [f"- {k}: {_md(v)}" for k, v in r["crosswalk_sources"].items()]
    if r["en_v2_without_counterpart"]:
        out += ["", "EN 303 645 V2.1.1 provisions with no counterpart in this table (not covered "
                "by this report): " + ", ".join(r["en_v2_without_counterpart"]) + "."]
    return "\n".join(out) + "\n"


def _html(r):
    e = html.escape
    ids = {}  # evidence test -> anchor
    for row in r["provisions"]:
        for ev in row["evidence"]:
            ids.setdefault(ev["test"], f"ev-{len(ids) + 1}")
    rows, current = [], None
    for row in r["provisions"]:
        if row["clause"] != current:
            current = row["clause"]
            rows.append(f'<tr class="clause"><th colspan="6">{e(current)} '
                        f'{e(row["clause_title"])}</th></tr>')
        v = row["verdict"]
        badge = f'<span class="badge b-{v.replace("/", "")}">{e(v)}</span>'
        if v != row["claimed"]:
            badge += f'<div class="claimed">claimed {e(row["claimed"])}</div>'
        detail = "".join(f"<p><b>{e(k)}:</b> {e(' '.join(t.split()))}</p>"
                         for k, t in _detail_parts(row))
        evs = "".join(f'<li class="o-{ev["outcome"]}"><a href="#{ids[ev["test"]]}">'
                      f'<code>{e(ev["test"])}</code></a> <span class="outcome">'
                      f'{e(ev["outcome"])}</span></li>' for ev in row["evidence"])
        if evs:
            head = "<p class=\"partial\">partial evidence</p>" if row["claimed"] == "N" else ""
            evs = f"{head}<ul>{evs}</ul>"
        cross = "".join(f"<div>{e(c)}</div>" for c in _cross_parts(row))
        rows.append(
            f'<tr class="provision verdict-{v.replace("/", "")}" id="p-{e(row["ref"])}" '
            f'data-ref="{e(row["ref"])}" data-verdict="{e(v)}">'
            f'<td class="ref">Provision {e(row["ref"])}<div class="text">{e(row["text"])}</div>'
            f'</td><td class="status">{e(row["status"])}</td><td class="support">{badge}</td>'
            f'<td class="detail">{detail}</td><td class="evidence">{evs or "-"}</td>'
            f'<td class="cross">{cross}</td></tr>')
    cited = {}
    for row in r["provisions"]:
        for ev in row["evidence"]:
            cited.setdefault(ev["test"], (ev, []))[1].append(row["ref"])
    evidence = "".join(
        f'<li id="{ids[t]}" class="o-{ev["outcome"]}"><code>{e(t)}</code> '
        f'<span class="outcome">{e(ev["outcome"])}</span>'
        f'{" (" + str(ev["cases"]) + " cases)" if ev["cases"] > 1 else ""}, '
        f'{ev["time_s"]:.2f} s, for ' + ", ".join(f'<a href="#p-{e(x)}">{e(x)}</a>' for x in refs)
        + (f'<div class="msg">{e(ev["message"])}</div>' if ev["outcome"] != "passed" else "")
        + "</li>" for t, (ev, refs) in cited.items())
    notes = [f'<p class="provenance">Belongs to: {e(_provenance_line(r))}</p>']
    if r["summary"]["failed"]:
        notes.append(f'<p class="alert fail">FAIL: {e(", ".join(r["summary"]["failed"]))}: '
                     "claimed, but not every evidence test passed in this run.</p>")
    if r["placeholders"]:
        notes.append('<p class="alert placeholder">Placeholders left in conformance/product.toml '
                     f'(replace before publishing): {e(", ".join(r["placeholders"]))}</p>')
    std, p = r["standard"], r["product"]
    title = f"{std['standard']} V{std['version']}, Table {std['table']}: {std['title']}"
    sources = "".join(f"<li><b>{e(k)}</b>: {e(' '.join(v.split()))}</li>"
                      for k, v in r["crosswalk_sources"].items())
    tmpl = string.Template((TEMPLATES / "report.html").read_text())
    return tmpl.substitute(
        title=e(title),
        product=e(f"{p['name']}, model {p['model']} ({p['manufacturer']})") if p else "",
        run=e(_run_line(r)), generated=e(r["generated"]), verdicts=e(_verdict_line(r)),
        notes="".join(notes), rows="\n".join(rows), evidence=evidence, sources=sources,
        uncovered=e(", ".join(r["en_v2_without_counterpart"]) or "none"))


def report(junit, fmt="md", map_path=MAP_PATH, product_path=PRODUCT_PATH, now=None,
           bundle=None):
    """(text, report dict) for a JUnit file: the library call behind `iotctl report`."""
    doc = build_report(load_map(map_path), read_junit(junit), load_product(product_path), now,
                       bundle=bundle)
    return render(doc, fmt), doc


# --- the published documents ---------------------------------------------------------------

def load_product(path=PRODUCT_PATH):
    doc = _toml(path)
    need = {"manufacturer": ("name", "website"), "product": ("name", "model", "product_id"),
            "security": ("contact_email", "report_url", "security_txt", "policy_url",
                         "advisories_url", "csaf_namespace", "advisory_prefix",
                         "acknowledge_within_days", "triage_within_days",
                         "status_update_every_days", "fix_within_days",
                         "critical_fix_within_days", "disclose_after_days"),
            "support": ("end_date", "reasons", "after_end"),
            "privacy": ("service", "contact_email")}
    missing = [f"{t}.{k}" for t, keys in need.items() for k in keys
               if k not in doc.get(t, {})]
    if missing:
        raise ConformanceError(f"{path} lacks {', '.join(missing)}")
    try:
        datetime.date.fromisoformat(doc["support"]["end_date"])
    except (TypeError, ValueError):
        raise ConformanceError(f"{path}: support.end_date must be a date, YYYY-MM-DD") from None
    return doc


def placeholders(product):
    """Dotted keys of product.toml values a maker has not set yet."""
    found = set(product.get("placeholders", []))

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else k, x)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(f"{prefix}[{i}]", x)
        elif isinstance(v, str) and _EXAMPLE.search(v):
            found.add(prefix)
    walk("", {k: v for k, v in product.items() if k != "placeholders"})
    return sorted(found)


def firmware_privacy(firmware=FIRMWARE):
    """INVENTORY, PURPOSES and THIRD_PARTIES from the firmware's notice.json, which the device's
    own pages show: the privacy notice says what the device itself says. The purposes must be
    exactly the ones firmware/privacy.py asks consent for (KEYS, read without importing it:
    it is MicroPython)."""
    path = Path(firmware) / "notice.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConformanceError(f"{path} is missing: the privacy notice is rendered from it") \
            from None
    except ValueError as e:
        raise ConformanceError(f"{path} is not JSON: {e}") from None
    try:
        found = {"INVENTORY": tuple(tuple(r) for r in doc["inventory"]),
                 "PURPOSES": tuple(tuple(p) for p in doc["purposes"]),
                 "THIRD_PARTIES": doc["third_parties"]}
    except (KeyError, TypeError):
        raise ConformanceError(f"{path} must hold inventory, purposes and third_parties") \
            from None
    if any(len(r) != 6 for r in found["INVENTORY"]) or any(len(p) != 3
                                                            for p in found["PURPOSES"]):
        raise ConformanceError(f"{path}: inventory rows have 6 fields, purposes 3")
    keys = None
    src = Path(firmware) / "privacy.py"
    for node in ast.parse(src.read_text(), str(src)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "KEYS":
            keys = ast.literal_eval(node.value)
    if keys is None or tuple(p[0] for p in found["PURPOSES"]) != tuple(keys):
        raise ConformanceError(f"{path}: the purposes must be {keys} of {src}, in that order")
    return found


def _table(headers, rows):
    line = "| " + " | ".join(headers) + " |"
    return "\n".join([line, "|" + "---|" * len(headers)] +
                     ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows])


def template_values(product, today=None):
    """Every ${name} a template may use: product.toml's keys, dotted, and what is computed."""
    values = {}

    def flat(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                flat(f"{prefix}.{k}" if prefix else k, x)
        else:
            values[prefix] = ", ".join(map(str, v)) if isinstance(v, list) else str(v)
    flat("", {k: v for k, v in product.items() if k != "placeholders"})
    today = today or datetime.date.today()
    end = datetime.date.fromisoformat(product["support"]["end_date"])
    values["support.end_date_long"] = f"{end.day} {end:%B %Y}"
    values["today"] = today.isoformat()
    values["generated_datetime"] = f"{today.isoformat()}T00:00:00.000Z"
    return values


def interface_list(docs_dir=DOCS):
    """docs/interfaces.md without its title: the interface list that the attack-surface test
    checks against a running device is the one that is published."""
    path = Path(docs_dir) / "interfaces.md"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConformanceError(f"{path} is missing: the published interface list is "
                               "rendered from it") from None
    return text.split("\n", 1)[1].strip() if text.startswith("# ") else text.strip()


def _privacy_values(values, product, firmware):
    """The privacy notice's tables, from firmware/privacy.py with {maker} and {service} set."""
    fill = {"{maker}": product["manufacturer"]["name"], "{service}": product["privacy"]["service"]}

    def sub(text):
        for k, v in fill.items():
            text = text.replace(k, v)
        return text
    priv = firmware_privacy(firmware)
    values["privacy.inventory"] = _table(
        ("Personal data", "Where it is kept", "Who uses it", "Why", "How long",
         "What removes it"), [tuple(sub(c) for c in row) for row in priv["INVENTORY"]])
    values["privacy.purposes"] = "\n".join(
        f"- **{sub(title)}** (`{key}`): {sub(text)}" for key, title, text in priv["PURPOSES"])
    values["privacy.third_parties"] = sub(priv["THIRD_PARTIES"])


class _Template(string.Template):
    idpattern = r"(?a:[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)"


def render_docs(product, names=DOCUMENTS, firmware=FIRMWARE, docs_dir=None, today=None):
    """{name: text} of the published documents; the CSAF advisory template is checked."""
    unknown = [n for n in names if n not in DOCUMENTS]
    if unknown:
        raise ConformanceError(f"unknown document(s) {', '.join(unknown)}; known: "
                               f"{', '.join(DOCUMENTS)}")
    values = template_values(product, today)
    if "privacy-notice.md" in names:
        _privacy_values(values, product, firmware)
    if "interfaces.md" in names:
        values["interfaces.doc"] = interface_list(docs_dir or DOCS)
    out = {}
    for name in names:
        src = TEMPLATES / name
        try:
            tmpl = _Template(src.read_text())
        except FileNotFoundError:
            raise ConformanceError(f"template {src} does not exist") from None
        if name.endswith(".json"):
            vals = {k: json.dumps(v)[1:-1] for k, v in values.items()}
        else:
            vals = values
        try:
            text = tmpl.substitute(vals)
        except (KeyError, ValueError) as e:
            raise ConformanceError(f"template {src}: no value for {e}") from None
        if name.endswith(".json"):
            doc = json.loads(text)
            problems = check_csaf(doc)
            if problems:
                raise ConformanceError(f"{name} is not a CSAF 2.0 security advisory: "
                                       + "; ".join(problems))
            text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        out[name] = text
    return out


def write_docs(outdir, product_path=PRODUCT_PATH, names=DOCUMENTS, firmware=FIRMWARE):
    """Render the documents into `outdir`; returns the paths written."""
    outdir = Path(outdir)
    if outdir.resolve() == TEMPLATES.resolve():
        raise ConformanceError("refusing to write the documents over their templates")
    docs = render_docs(load_product(product_path), names, firmware)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in docs.items():
        (outdir / name).write_text(text)
        paths.append(outdir / name)
    return paths
