"""CLI: `iotctl rollout status|advance|pause|abort` (thin wrappers over host_tools.cloud.rollout).
A rollout starts with `iotctl publish --rollout P`; `iotctl monitor` records the outcomes
and halts it by itself."""

import json

import click

from ..cloud import rollout, updateserver
from .cloud import format_rollout

_KEYS = click.option("--keys", "keys_dir", required=True,
                     type=click.Path(exists=True, file_okay=False),
                     help="folder with the manufacturer CA (the service's certificate)")
_DB = click.option("--db", default=None, metavar="PATH|URL",
                   help="SQLite file or postgresql:// URL [default: KEYS/service/rollouts.sqlite]")
_BROKER = click.option("--broker", required=True, metavar="HOST:PORT",
                       help="the MQTT broker (TLS)")
_JSON = click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")


def _open(keys_dir, db):
    return rollout.Store.open(db or rollout.default_db(keys_dir))


def _show(status, as_json):
    if as_json:
        click.echo(json.dumps(status, sort_keys=True))
        return
    click.echo(format_rollout(status))
    for dev, o in sorted(status.get("devices", {}).items()):
        click.echo(f"  {dev}: {o['state']}" + (f" ({o['detail']})" if o["detail"] else ""))


@click.group("rollout")
def rollout_group():
    """Staged rollouts: status, advance, pause, abort."""


@rollout_group.command("status")
@click.argument("rollout_id", required=False)
@_KEYS
@_DB
@_JSON
def status_cmd(rollout_id, keys_dir, db, as_json):
    """One rollout's state and its devices' outcomes (all rollouts without ROLLOUT_ID)."""
    with _open(keys_dir, db) as store:
        if rollout_id:
            _show(store.status(rollout_id), as_json)
            return
        found = [store.status(r["rollout_id"]) for r in store.all()]
    if as_json:
        click.echo(json.dumps(found, sort_keys=True))
    else:
        for s in found:
            click.echo(format_rollout(s))
        if not found:
            click.echo("no rollouts")


def _change(rollout_id, keys_dir, db, broker, as_json, op):
    updateserver.parse_broker(broker)
    with _open(keys_dir, db) as store:
        r = op(store)
        rollout.announce(store, keys_dir, broker, r)
        _show(store.status(rollout_id), as_json)


@rollout_group.command("advance")
@click.argument("rollout_id")
@click.option("--to", "percent", type=int, required=True, help="the new percentage (1 to 100)")
@_KEYS
@_DB
@_BROKER
@_JSON
def advance_cmd(rollout_id, percent, keys_dir, db, broker, as_json):
    """Offer the release to more of the channel (also resumes a paused rollout)."""
    _change(rollout_id, keys_dir, db, broker, as_json,
            lambda s: s.advance(rollout_id, percent))


@rollout_group.command("pause")
@click.argument("rollout_id")
@_KEYS
@_DB
@_BROKER
@_JSON
def pause_cmd(rollout_id, keys_dir, db, broker, as_json):
    """No other device starts the release until `advance`."""
    _change(rollout_id, keys_dir, db, broker, as_json, lambda s: s.pause(rollout_id))


@rollout_group.command("abort")
@click.argument("rollout_id")
@_KEYS
@_DB
@_BROKER
@_JSON
def abort_cmd(rollout_id, keys_dir, db, broker, as_json):
    """Stop the rollout for good: no other device starts the release."""
    _change(rollout_id, keys_dir, db, broker, as_json, lambda s: s.abort(rollout_id))


COMMANDS = [rollout_group]
