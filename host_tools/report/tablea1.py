"""Table A.1 of a conformance report as text: Markdown, HTML, or the report's own JSON."""

import html
import json
import string

from .conformance import CONFORMANCE, ConformanceError

TEMPLATES = CONFORMANCE / "templates"


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


def md_cell(text):
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
            out.append(f"| **{current} {md_cell(row['clause_title'])}** | | | | | |")
        support = {"FAIL": f"**FAIL** (claimed {row['claimed']})"}.get(row["verdict"],
                                                                      row["verdict"])
        if row["verdict"] != row["claimed"] and row["verdict"] == "N":
            support = "N (claimed Y; placeholder facts)"
        detail = "<br>".join(f"*{k}:* {md_cell(v)}" for k, v in _detail_parts(row))
        partial = "partial: " if row["claimed"] == "N" and row["evidence"] else ""
        ev = "<br>".join(f"{e['outcome']}: `{md_cell(e['test'])}`" for e in row["evidence"])
        out.append(f"| Provision {row['ref']} | {row['status']} | {support} | {detail} | "
                   f"{partial}{ev or '-'} | {'<br>'.join(md_cell(c) for c in _cross_parts(row))} |")
    bad = {}
    for row in r["provisions"]:
        for e in row["evidence"]:
            if e["outcome"] != "passed":
                bad.setdefault(e["test"], (e, []))[1].append(row["ref"])
    if bad:
        out += ["", "## Evidence that did not pass", ""]
        out += [f"- `{t}` ({', '.join(refs)}): {e['outcome']}: {md_cell(e['message'] or '')[:240]}"
                for t, (e, refs) in bad.items()]
    out += ["", "## Crosswalk sources", ""]
    out += [f"- {k}: {md_cell(v)}" for k, v in r["crosswalk_sources"].items()]
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
