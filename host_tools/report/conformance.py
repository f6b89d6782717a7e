"""Conformance evidence: Table A.1 of ETSI TS 103 645 V1.1.1, each claim proved by a test run.

The provision map (conformance/provisions.toml) says, provision by provision, what the product
does and which tests prove it; a JUnit XML file (`pytest --junitxml`) says which of those tests
passed. A row claimed "Y" is reported as supported only when every one of its tests passed in
that run; otherwise its verdict is FAIL. So is an N/A whose evidence (that the condition does not
apply) failed. The report is rendered as text by
report/tablea1.py; the documents a maker publishes by report/published.py.
"""

import datetime
import re
import tomllib
import xml.etree.ElementTree as ET

from ..errors import IotctlError, UsageError
from ..mpy import REPO
from . import provenance as prov

CONFORMANCE = REPO / "conformance"
MAP_PATH = CONFORMANCE / "provisions.toml"
PRODUCT_PATH = CONFORMANCE / "product.toml"
SCHEMA_PATH = CONFORMANCE / "report.schema.json"
REPORT_FORMAT = "iot-conformance-report/1"

STATUSES = ("M", "R", "MC", "RC")
SUPPORT = ("Y", "N", "N/A")
OUTCOMES = ("missing", "error", "failed", "skipped", "passed")  # worst first
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
    now = now or datetime.datetime.now(datetime.UTC)
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


def report(junit, fmt="md", map_path=MAP_PATH, product_path=PRODUCT_PATH, now=None,
           bundle=None):
    """(text, report dict) for a JUnit file: the library call behind `iotctl report`."""
    from .tablea1 import render

    doc = build_report(load_map(map_path), read_junit(junit), load_product(product_path), now,
                       bundle=bundle)
    return render(doc, fmt), doc



# --- the product configuration --------------------------------------------------------------

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
