"""Regulatory documents generated from a conformance report and conformance/product.toml: the
EU Cyber Resilience Act Annex I map (requirement, measure, evidence: conformance/cra-annex1.toml)
and the UK PSTI statement of compliance, which is only issued as such when the three PSTI
requirements are supported in the run and none of the statement's facts is a placeholder."""

import datetime
import tomllib

from ..errors import UsageError
from ..mpy import REPO
from .ics import header

CRA_PATH = REPO / "conformance" / "cra-annex1.toml"
# UK PSTI Regulations 2023 (SI 2023/1007), Schedule 1 paragraph -> the provision of this report
# whose support shows it (the map's psti crosswalk; Schedule 2 names the EN provisions).
PSTI = {"Schedule 1 paragraph 1": "No universal default passwords",
        "Schedule 1 paragraph 2": "Information on how to report security issues",
        "Schedule 1 paragraph 3": "Information on minimum security update periods"}
STATEMENT_FACTS = ("manufacturer.name", "manufacturer.address", "product.name", "product.model",
                   "support.end_date", "compliance.signatory", "compliance.signatory_function",
                   "compliance.place", "compliance.batch")


def load_cra(path=CRA_PATH):
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read the CRA map {path}: {e}") from None
    reqs = doc.get("requirement", [])
    if not reqs or not all(r.get("ref") and r.get("text") and isinstance(r.get("provisions"),
                                                                         list) for r in reqs):
        raise UsageError(f"{path}: every [[requirement]] needs ref, text and provisions")
    return doc


def cra_map(report, doc=None):
    """Each Annex I requirement with its measures' verdicts: met (all Y), partial, or gap."""
    doc = doc or load_cra()
    rows = {r["ref"]: r for r in report["provisions"]}
    out = []
    for req in doc["requirement"]:
        unknown = [p for p in req["provisions"] if p not in rows]
        if unknown:
            raise UsageError(f"CRA {req['ref']} names provisions not in the report: {unknown}")
        measures = [rows[p] for p in req["provisions"]]
        verdicts = [m["verdict"] for m in measures]
        status = "met" if all(v == "Y" for v in verdicts) else \
            "partial" if "Y" in verdicts else "gap"
        tests = sorted({e["test"] for m in measures for e in m["evidence"]
                        if e["outcome"] == "passed"})
        out.append({"ref": req["ref"], "text": req["text"], "status": status,
                    "measures": [{"provision": m["ref"], "verdict": m["verdict"],
                                  "facts_unset": m["facts_unset"]} for m in measures],
                    "passed_tests": tests, "note": req.get("note")})
    return {"regulation": doc["regulation"], "reporting_from": doc["reporting_from"],
            "applies_from": doc["applies_from"], "requirements": out}


def render_cra_md(cra, report):
    lines = [f"# {cra['regulation']}: requirements, measures, evidence", "", header(report),
             f"Reporting obligations (Article 14) apply from {cra['reporting_from']}; Annex I "
             f"from {cra['applies_from']}. Measures are provisions of the ETSI TS 103 645 report "
             "of the same run; `met`: every measure supported with passing tests. The project's "
             "mapping, not a legal assessment.", "",
             "| Requirement | Status | Measures (verdict) | Passing tests |", "|---|---|---|---|"]
    for r in cra["requirements"]:
        ms = ", ".join(f"{m['provision']} ({m['verdict']}"
                       + (f"; placeholders: {', '.join(m['facts_unset'])}" if m["facts_unset"]
                          else "") + ")" for m in r["measures"])
        note = f"<br>*{r['note']}*" if r["note"] else ""
        lines.append(f"| **{r['ref']}** {r['text']}{note} | {r['status']} | {ms} | "
                     f"{len(r['passed_tests'])} |")
    gaps = [r["ref"] for r in cra["requirements"] if r["status"] != "met"]
    lines += ["", f"Not met in this run: {', '.join(gaps) or 'none'}."]
    return "\n".join(lines) + "\n"


def ledger_batch(where):
    """What the factory ledger (a path or postgresql:// URL) says was made: the devices a
    statement covers, by model, board and provisioning time."""
    from ..ledger import Ledger

    with Ledger.open(where) as led:
        rows = led.rows()
    if not rows:
        return {"ledger": str(where), "devices": 0}

    def day(t):
        return datetime.datetime.fromtimestamp(int(t), datetime.UTC).date().isoformat()
    return {"ledger": str(where), "devices": len(rows),
            "models": sorted({r["model"] for r in rows}),
            "products": sorted({r["product"] for r in rows}),
            "boards": sorted({r["board"] for r in rows}),
            "first": day(rows[0]["provisioned"]), "last": day(rows[-1]["provisioned"]),
            "first_id": rows[0]["device_id"], "last_id": rows[-1]["device_id"]}


def psti_statement(report, product, today=None, batch=None):
    """The statement's facts and whether it can be issued (every PSTI requirement supported
    in the run, no placeholder among its facts; with `batch` (ledger_batch), devices of this
    product's model only); `blocking` says why not."""
    from .conformance import placeholders

    rows = {r["ref"]: r for r in report["provisions"]}
    reqs = []
    for para, title in PSTI.items():
        refs = [r["ref"] for r in report["provisions"]
                if r["crosswalk"]["uk_psti"] and para in r["crosswalk"]["uk_psti"]["requirements"]]
        reqs.append({"requirement": para, "title": title,
                     "provisions": [{"ref": x, "verdict": rows[x]["verdict"]} for x in refs]})
    blocking = [f"{q['requirement']} ({q['title']}): provision {p['ref']} is {p['verdict']}"
                for q in reqs for p in q["provisions"] if p["verdict"] != "Y"]
    blocking += [f"{q['requirement']}: no provision of the report shows it" for q in reqs
                 if not q["provisions"]]
    def get(dotted):
        table, key = dotted.split(".")
        return product.get(table, {}).get(key)
    unset = set(placeholders(product))
    blocking += [f"{f} is a placeholder in conformance/product.toml" if f in unset else
                 f"{f} is not set in conformance/product.toml" for f in STATEMENT_FACTS
                 if f in unset or not str(get(f) or "").strip()]
    if batch is not None:
        model = product["product"]["model"]
        if not batch["devices"]:
            blocking.append(f"the factory ledger {batch['ledger']} holds no device")
        elif batch["models"] != [model]:
            blocking.append(f"the factory ledger holds models {', '.join(batch['models'])}; "
                            f"the statement is for model {model}")
    return {"issuable": not blocking, "blocking": blocking, "requirements": reqs,
            "batch": batch,
            "facts": {f: get(f) for f in STATEMENT_FACTS},
            "date": (today or datetime.date.today()).isoformat()}


def render_psti_md(st, report):
    f = st["facts"]
    title = "Statement of compliance" if st["issuable"] else \
        "DRAFT: not a statement of compliance (cannot be issued yet)"
    lines = [f"# UK PSTI: {title}", "", header(report)]
    if not st["issuable"]:
        lines += ["This draft cannot be issued because:", ""]
        lines += [f"- {b}" for b in st["blocking"]] + [""]
    lines += [
        "Product Security and Telecommunications Infrastructure (Security Requirements for "
        "Relevant Connectable Products) Regulations 2023 (SI 2023/1007).", "",
        f"- Product type and batch: {f['product.name']}, model {f['product.model']}; "
        f"{f['compliance.batch']}",
    ]
    b = st["batch"]
    if b and b["devices"]:
        lines.append(f"- Devices covered (factory ledger {b['ledger']}): {b['devices']} of model "
                     f"{', '.join(b['models'])} (boards {', '.join(b['boards'])}), provisioned "
                     f"{b['first']} to {b['last']}, device ids {b['first_id']} to {b['last_id']}")
    lines += [
        f"- Manufacturer: {f['manufacturer.name']}, {f['manufacturer.address']}",
        "- This statement is prepared by or on behalf of the manufacturer.",
        "- In the opinion of the manufacturer, the manufacturer has complied with the applicable "
        "security requirements of Schedule 1:",
    ]
    for q in st["requirements"]:
        ps = ", ".join(f"TS 103 645 {p['ref']}: {p['verdict']}" for p in q["provisions"])
        lines.append(f"  - {q['requirement']}, {q['title']} ({ps or 'not shown'})")
    lines += [f"- Defined support period (minimum security update period): until "
              f"{f['support.end_date']}",
              f"- Signed for and on behalf of the manufacturer: {f['compliance.signatory']}, "
              f"{f['compliance.signatory_function']}",
              f"- Place and date of issue: {f['compliance.place']}, {st['date']}", "",
              "The list of what a statement must contain is the project's reading of the "
              "Regulations (regulation 6 and Schedule 3), not checked against their text here."]
    return "\n".join(lines) + "\n"
