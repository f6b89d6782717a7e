"""The ICS (implementation conformance statement) of ETSI TS 103 701 over EN 303 645 V3.1.3
Table B.1, generated from a conformance report: each V3 provision (split ...A/...B rows are
rows of their own) gets its support from the TS 103 645 rows mapped to it and their verdicts
in the test run, its evidence from their tests, and the IXIT that describes its mechanism."""

import tomllib

from ..errors import UsageError
from ..mpy import REPO
from . import ixit

V3_PATH = REPO / "conformance" / "en303645-v3.toml"


def load_v3(path=V3_PATH):
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read the V3.1.3 table {path}: {e}") from None
    rows = doc.get("provision", [])
    if not rows or not all(isinstance(r.get("ref"), str) and isinstance(r.get("status"), str)
                           for r in rows):
        raise UsageError(f"{path}: every [[provision]] needs ref and status")
    return doc


def check_map(pmap, v3):
    """Problems: V3 numbers in the provision map that Table B.1 does not have."""
    known = {r["ref"] for r in v3["provision"]}
    return [f"{p['ref']}: EN V3.1.3 {n} is not a row of Table B.1"
            for p in pmap["provision"] for n in p.get("crosswalk", {}).get("en_v3", [])
            if n not in known]


def _support(verdicts):
    if not verdicts:
        return "-"
    if "FAIL" in verdicts:
        return "FAIL"
    for v in ("Y", "N/A"):
        if all(x == v for x in verdicts):
            return v
    return "N"


def rows(report, v3):
    """One ICS row per Table B.1 provision."""
    by_v3 = {}
    for r in report["provisions"]:
        cw = r["crosswalk"]["en_303_645_v3"]
        for n in cw["provisions"]:
            by_v3.setdefault(n, []).append((r, cw["verified"]))
    groups = {}
    for key, (_title, refs) in ixit.IXITS.items():
        for ref in refs:
            groups.setdefault(ref, []).append(key)
    out = []
    for p in v3["provision"]:
        mapped = by_v3.get(p["ref"], [])
        evidence, seen = [], set()
        for r, _ in mapped:
            for ev in r["evidence"]:
                if ev["test"] not in seen:
                    seen.add(ev["test"])
                    evidence.append({"test": ev["test"], "outcome": ev["outcome"]})
        out.append({
            "ref": p["ref"], "status": p["status"],
            "support": _support([r["verdict"] for r, _ in mapped]),
            "from": [{"ts": r["ref"], "verdict": r["verdict"], "wording_verified": v}
                     for r, v in mapped],
            "ixit": groups.get(p["ref"], []), "evidence": evidence})
    return out


def build(report, v3=None):
    v3 = v3 or load_v3()
    table = rows(report, v3)
    return {"standard": f"{v3['standard']} V{v3['version']}", "sources": v3.get("sources", {}),
            "rows": table, "not_assessed": [r["ref"] for r in table if r["support"] == "-"]}


def header(report):
    """The lines that say which product, run, commit and bundle a document belongs to."""
    p, prov = report["product"], report["provenance"]
    out = []
    if p:
        out.append(f"Product: {p['name']}, model {p['model']} ({p['manufacturer']})  ")
    out.append(f"Commit: {prov['commit'] or 'unknown'}"
               + (" (uncommitted changes)" if prov["dirty"] else "") + "  ")
    b = prov["bundle"]
    if b:
        out.append(f"Bundle: {b['path']}, {b['product']} {b['version']}, SHA-256 {b['sha256']}, "
                   f"SBOM SHA-256 {b['sbom_sha256'] or 'none'}  ")
    run = report["run"]
    out.append(f"Test run: {run['junit']} ({run['timestamp'] or 'no timestamp'}): "
               f"{run['passed']} of {run['tests']} passed  ")
    out.append(f"Generated: {report['generated']}")
    return "\n".join(out) + "\n"


def render_md(ics, report):
    lines = [f"# ICS: implementation conformance statement, {ics['standard']} (Table B.1)", "",
             header(report),
             "Support comes from the ETSI TS 103 645 V1.1.1 rows mapped to each provision and "
             "their verdicts in the test run (conformance/provisions.toml); `-`: no TS row maps "
             "to it, not assessed by this report.", "",
             "| Reference | Status | Support | From (TS 103 645) | IXIT | Tests (this run) |",
             "|---|---|---|---|---|---|"]
    for r in ics["rows"]:
        frm = "<br>".join(f"{f['ts']}: {f['verdict']}" + ("" if f["wording_verified"] else
                                                           " (number only)")
                          for f in r["from"]) or "-"
        tests = "<br>".join(f"{e['outcome']}: `{e['test'].split('::')[-1]}`"
                            for e in r["evidence"]) or "-"
        if r["support"] == "N" and r["evidence"]:
            tests = "partial (not supported): " + tests
        lines.append(f"| Provision {r['ref']} | {r['status']} | {r['support']} | {frm} | "
                     f"{', '.join(r['ixit']) or '-'} | {tests} |")
    lines += ["", "## Sources of the table", ""]
    lines += [f"- {k}: {' '.join(v.split())}" for k, v in ics["sources"].items()]
    lines += ["", f"Not assessed ({len(ics['not_assessed'])}): "
              + ", ".join(ics["not_assessed"]) + "."]
    return "\n".join(lines) + "\n"
