"""Every document `iotctl report` writes from one conformance report: Table A.1 (md, html,
json), the TS 103 701 ICS and IXIT, the CRA Annex I map and the UK PSTI statement."""

from . import conformance, cra, ics, ixit, tablea1

FORMATS = ("md", "html", "json", "ics", "ixit", "cra", "psti")


def render(doc, fmt, product, ledger=None):
    """The text of `fmt` for the report `doc` (conformance.build_report) and its product;
    `ledger`: the factory ledger whose devices the PSTI statement covers."""
    if fmt in ("md", "html", "json"):
        return tablea1.render(doc, fmt)
    if fmt == "ics":
        return ics.render_md(ics.build(doc), doc)
    if fmt == "ixit":
        rows = ics.rows(doc, ics.load_v3())
        return ixit.render_md(ixit.build(doc, rows), ics.header(doc))
    if fmt == "cra":
        return cra.render_cra_md(cra.cra_map(doc), doc)
    if fmt == "psti":
        batch = cra.ledger_batch(ledger) if ledger else None
        return cra.render_psti_md(cra.psti_statement(doc, product, batch=batch), doc)
    raise conformance.ConformanceError(f"unknown report format {fmt!r} ({', '.join(FORMATS)})")
