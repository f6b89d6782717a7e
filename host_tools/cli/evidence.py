"""CLI: sbom (a CycloneDX SBOM of a bundle or a MicroPython image) and advisories (an SBOM
against an offline advisory feed); thin wrappers over host_tools.report.sbom and
host_tools.report.advisories."""

import json
from pathlib import Path

import click

from ..errors import ToolError, UsageError, VerifyError
from ..report import advisories, sbom


@click.command("sbom")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="write the SBOM here (default: stdout)")
@click.option("--check", "given", type=click.Path(exists=True, dir_okay=False),
              help="check this SBOM file against the bundle's signed manifest instead")
def sbom_cmd(source, output, given):
    """Write the CycloneDX 1.6 SBOM of a signed bundle or a firmware image.

    For a bundle, the SBOM is checked against the SHA-256 its signed manifest binds; a
    firmware image is an ESP app image of MicroPython. Every SBOM is validated against the
    CycloneDX 1.6 schema before it is written."""
    data = Path(source).read_bytes()
    if data[:4] == b"IOTB":
        try:
            got = sbom.check_bundle(data, Path(given).read_bytes() if given else None)
            text, note = got["sbom"], f"matches the signed manifest's sbom_sha256 {got['sha256']}"
        except VerifyError as e:
            if e.verdict != "NO_SBOM" or given:
                raise
            text = sbom.for_bundle_file(data)[0]
            note = ("NOT authenticated: the bundle's manifest binds no SBOM (built before "
                    "sbom_sha256)")
    elif given:
        raise UsageError("--check needs a signed bundle: only a bundle's manifest binds an SBOM")
    elif data[:1] == b"\xe9":
        text, note = sbom.for_image(data, Path(source).name), "firmware image (not signed)"
    else:
        raise UsageError(f"{source} is neither a signed bundle (IOTB) nor an ESP app image")
    problems = sbom.validate(text)  # the CycloneDX 1.6 JSON schema, before anything is written
    if problems:
        raise ToolError("the SBOM does not validate against CycloneDX 1.6: " + "; ".join(problems))
    if given:
        click.echo(f"{given}: {note}; valid CycloneDX 1.6")
        return
    if output:
        if Path(output).resolve() == Path(source).resolve():
            raise UsageError("the SBOM must not overwrite its source")
        Path(output).write_bytes(text)
        click.echo(f"wrote {output} (sha256 {sbom.digest(text)}): {note}", err=True)
    else:
        click.echo(text.decode(), nl=False)
        click.echo(note, err=True)


@click.command("advisories")
@click.option("--sbom", "sbom_path", required=True, type=click.Path(dir_okay=False),
              help="a CycloneDX JSON SBOM (iotctl sbom, iotctl build --sbom)")
@click.option("--feed", required=True, type=click.Path(),
              help="OSV JSON (a record, a list, a batch answer, or a folder of them) or CSAF 2.0")
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
def advisories_cmd(sbom_path, feed, as_json):
    """Match an SBOM against an offline advisory feed (exit 13 when one affects it).

    The advisory ids and the affected components are named."""
    try:
        result = advisories.check(sbom_path, feed)
    except advisories.Affected as e:
        if as_json:  # one JSON object: the CLI's error object carries the result
            e.details.update(e.result)
        else:
            for m in e.matches:
                click.echo(f"AFFECTED {m['id']}: {m['component']} {m['version']} "
                           f"({m['bom_ref']}): {m['summary']}")
        raise
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for u in result["unchecked"]:
            click.echo(f"not checked {u['id']}: {u['component']} {u['version']} "
                       "(the advisory gives only Git commits)")
        click.echo(f"no advisory of {result['advisories']} affects the "
                   f"{result['components']} components of {sbom_path}")


COMMANDS = [sbom_cmd, advisories_cmd]
