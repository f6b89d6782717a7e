"""CLI: report (Table A.1 of ETSI TS 103 645 proved by a test run) and docs (the documents a
maker publishes); thin wrappers over host_tools.report.conformance."""

from pathlib import Path

import click

from ..errors import UsageError
from ..report import conformance, documents, published

_FORMATS = ("md", "html", "json")  # told by a file's suffix; the others need --format


def _format_of(path, fmt):
    suffix = Path(path).suffix.lower().lstrip(".")
    if fmt:
        return fmt
    if suffix in _FORMATS:
        return suffix
    if suffix == "htm":
        return "html"
    raise UsageError(f"cannot tell the format of {path}: give --format "
                     f"{', '.join(documents.FORMATS)}")


@click.command("report")
@click.option("--junit", default="build/junit.xml", show_default=True, type=click.Path(),
              help="JUnit XML of the test run (`make test` writes build/junit.xml)")
@click.option("--format", "fmt", type=click.Choice(documents.FORMATS), default=None,
              help="md, html, json: Table A.1; ics, ixit: the ETSI TS 103 701 ICS and IXIT; "
              "cra: the CRA Annex I map; psti: the UK PSTI statement of compliance "
              "(default: from each -o suffix, else md)")
@click.option("--ixit", "ixit_flag", is_flag=True, help="the IXIT (same as --format ixit)")
@click.option("-o", "--output", "outputs", multiple=True, type=click.Path(dir_okay=False),
              help="write here instead of stdout; repeat for several formats (.md .html .json)")
@click.option("--map", "map_path", default=str(conformance.MAP_PATH), show_default=True,
              type=click.Path(dir_okay=False), help="the provision map")
@click.option("--config", "product_path", default=str(conformance.PRODUCT_PATH),
              show_default=True, type=click.Path(dir_okay=False), help="the product's facts")
@click.option("--bundle", type=click.Path(exists=True, dir_okay=False),
              help="the signed bundle the run is about: its version and SHA-256 are reported")
@click.option("--ledger", help="the factory ledger (SQLite file or postgresql:// URL) whose "
              "devices the PSTI statement covers")
def report_cmd(junit, fmt, ixit_flag, outputs, map_path, product_path, bundle, ledger):
    """Table A.1 of ETSI TS 103 645 with each claim's tests and their results in a run.

    A provision claimed "Y" shows as supported only if every one of its tests passed; else
    FAIL, and the command exits non-zero (after writing the report)."""
    if ixit_flag:
        if fmt not in (None, "ixit"):
            raise UsageError("--ixit and --format name different documents")
        fmt = "ixit"
    product = conformance.load_product(product_path)
    doc = conformance.build_report(conformance.load_map(map_path), conformance.read_junit(junit),
                                   product, bundle=bundle)
    if not outputs:
        click.echo(documents.render(doc, fmt or "md", product, ledger), nl=False)
    for out in outputs:
        text = documents.render(doc, _format_of(out, fmt), product, ledger)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        click.echo(f"wrote {out}", err=True)
    v = doc["summary"]["verdicts"]
    click.echo(f"{v['Y']} supported, {v['FAIL']} FAIL, {v['N']} N, {v['N/A']} N/A "
               f"of {doc['summary']['provisions']} provisions", err=True)
    held = [r["ref"] for r in doc["provisions"] if r["facts_unset"] and r["claimed"] == "Y"]
    if held:
        click.echo(f"not supported while their published facts are placeholders: "
                   f"{', '.join(held)}", err=True)
    if doc["placeholders"]:
        click.echo(f"placeholders left in {product_path}: {', '.join(doc['placeholders'])}",
                   err=True)
    if doc["summary"]["failed"]:
        raise conformance.EvidenceFailed(doc["summary"]["failed"])


@click.command("docs")
@click.argument("names", nargs=-1)
@click.option("-o", "--output", "outdir", default="build/docs", show_default=True,
              type=click.Path(file_okay=False), help="folder to write the documents into")
@click.option("--config", "product_path", default=str(conformance.PRODUCT_PATH),
              show_default=True, type=click.Path(dir_okay=False), help="the product's facts")
def docs_cmd(names, outdir, product_path):
    """Render the documents a maker publishes from the product's facts: SECURITY.md,
    support-period.md, privacy-notice.md, interfaces.md, csaf-advisory-template.json
    (NAMES: only these)."""
    paths = published.write_docs(outdir, product_path, names or published.DOCUMENTS)
    for p in paths:
        click.echo(f"wrote {p}")
    left = conformance.placeholders(conformance.load_product(product_path))
    if left:
        click.echo(f"placeholders left in {product_path}: {', '.join(left)}", err=True)


COMMANDS = [report_cmd, docs_cmd]
