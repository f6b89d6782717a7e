"""CLI: `iotctl ledger list|export`, the factory ledger read back (no secrets are in it)."""

import csv
import io
import json
import os
from pathlib import Path

import click

from ..errors import UsageError
from ..ledger import COLUMNS, Ledger


def _ledger_options(func):
    func = click.option("--ledger", "where", default=None,
                        help="SQLite file or postgresql:// URL [default: KEYS/ledger.sqlite]")(func)
    return click.option("--keys", "keys_dir", type=click.Path(file_okay=False),
                        help="the key folder whose ledger.sqlite to read")(func)


def _rows(keys_dir, where):
    if where is None:
        if keys_dir is None:
            raise UsageError("give --keys DIR (its ledger.sqlite) or --ledger FILE|URL")
        where = Path(keys_dir) / "ledger.sqlite"
    if not str(where).startswith(("postgresql://", "postgres://")) and not Path(where).is_file():
        raise UsageError(f"no ledger at {where}")  # reading never creates an empty ledger
    with Ledger.open(where) as lg:
        return lg.rows()


@click.group("ledger")
def ledger_group():
    """The factory ledger: every provisioned device (ids and certificates, never secrets)."""


@ledger_group.command("list")
@_ledger_options
@click.option("--json", "as_json", is_flag=True,
              help='print {"devices": [...]} as one JSON object')
def list_cmd(keys_dir, where, as_json):
    """List the devices in the ledger, oldest first; replaced ones are marked."""
    rows = _rows(keys_dir, where)
    if as_json:
        click.echo(json.dumps({"devices": rows, "count": len(rows)}, indent=2))
        return
    for r in rows:
        state = f"replaced by {r['replaced_by']}" if r["replaced_by"] else "in service"
        click.echo(f"{r['device_id']}  {r['model']}  {r['board']}  cert serial "
                   f"{r['cert_serial']}  {r['station']}  {state}")
    click.echo(f"{len(rows)} device(s)")


@ledger_group.command("export")
@_ledger_options
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="the file to write (refused if it exists)")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True, help="CSV with a header row, or a JSON array")
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
def export_cmd(keys_dir, where, output, fmt, as_json):
    """Write every ledger row to a CSV or JSON file (written whole, then renamed)."""
    rows = _rows(keys_dir, where)
    out = Path(output)
    if out.exists():
        raise UsageError(f"{out} exists; refusing to overwrite it")
    if fmt == "json":
        text = json.dumps(rows, indent=2) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None
    result = {"output": str(out), "format": fmt, "count": len(rows)}
    click.echo(json.dumps(result, indent=2) if as_json else
               f"{len(rows)} device(s) written to {out} ({fmt})")


COMMANDS = [ledger_group]
