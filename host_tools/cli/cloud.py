"""CLI: serve, publish, monitor (thin wrappers over host_tools.cloud.updateserver and
host_tools.cloud.monitor): the service side of the cloud link."""

import json

import click

from ..cloud import monitor, rollout, updateserver
from ..cloud.rollout import HALT_AFTER, HALT_FAILURES
from ..errors import UsageError


def format_rollout(r):
    """One line for a person: a rollout's share, state and outcomes."""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(r["counts"].items())) or "no outcome yet"
    why = f" ({r['reason']})" if r["reason"] else ""
    return (f"rollout {r['rollout']} of {r['version']} on {r['channel']}: {r['state']}{why}, "
            f"{r['percent']} % = {r['admitted']} of {r['fleet']} known devices; {counts}")


@click.command("serve")
@click.option("--dir", "directory", default="updates", show_default=True,
              type=click.Path(file_okay=False), help="the folder of bundles to serve")
@click.option("--port", type=click.IntRange(1, 65535), default=8443, show_default=True,
              help="the TCP port to listen on")
@click.option("--address", default="127.0.0.1", show_default=True, help="where to listen")
@click.option("--keys", "keys_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="folder with the manufacturer CA (it issues the server's certificate)")
@click.option("--host", "hosts", multiple=True,
              help="name or address devices use for this server (repeat) "
                   "[default: localhost, 127.0.0.1]")
def serve_cmd(directory, port, address, keys_dir, hosts):
    """Serve update bundles over HTTPS (byte ranges, so downloads resume)."""
    from pathlib import Path

    Path(directory).mkdir(parents=True, exist_ok=True)
    srv = updateserver.UpdateServer(directory, port, keys_dir, address,
                                    tuple(hosts) or updateserver.DEFAULT_HOSTS, log=click.echo)
    click.echo(f"serving {directory} at {srv.url()} (certificate from the manufacturer CA); "
               "Ctrl-C stops")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


@click.command("publish")
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--channel", required=True, help="e.g. stable or beta (devices follow one)")
@click.option("--server", "server_url", required=True,
              help="base https:// URL of the update server that serves --dir")
@click.option("--broker", required=True, metavar="HOST:PORT", help="the MQTT broker (TLS)")
@click.option("--keys", "keys_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="folder with the trust anchors and the manufacturer CA")
@click.option("--dir", "directory", default="updates", show_default=True,
              type=click.Path(file_okay=False), help="the folder the update server serves")
@click.option("--spread", "spread_s", type=int, default=updateserver.SPREAD_S,
              show_default=True, help="devices start downloading at a random time within "
              "this many seconds (0: at once)")
@click.option("--rollout", "percent", type=int, default=None,
              help="a staged rollout: offer it to this percentage of the channel's devices "
              "(iotctl rollout advance raises it)")
@click.option("--halt-failures", type=int, default=None,
              help=f"halt the rollout when this percentage of the devices that tried failed "
              f"[default: {HALT_FAILURES}]")
@click.option("--halt-after", type=int, default=None,
              help=f"... once at least this many failed [default: {HALT_AFTER}]")
@click.option("--db", default=None, metavar="PATH|URL",
              help="the rollout store: SQLite file or postgresql:// URL "
              "[default: KEYS/service/rollouts.sqlite]")
@click.option("--timeout", type=click.FloatRange(min=1), default=15.0, show_default=True,
              help="seconds to wait for the broker to acknowledge the announcement")
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
def publish_cmd(bundle_file, channel, server_url, broker, keys_dir, directory, spread_s,
                percent, halt_failures, halt_after, db, timeout, as_json):
    """Put a verified bundle on the update server and announce it on fleet/<product>/CHANNEL."""
    if percent is None and (halt_failures is not None or halt_after is not None):
        raise UsageError("--halt-failures and --halt-after go with --rollout")
    result = updateserver.publish(bundle_file, channel, server_url, broker, keys_dir, directory,
                                  spread_s, rollout=percent, halt_failures=halt_failures,
                                  halt_after=halt_after, db=db, timeout=timeout)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        a = result["announcement"]
        click.echo(f"announced {a['version']} on {result['topic']}: {a['url']} "
                   f"({a['size']} bytes, sha256 {a['sha256'][:16]}...)")
        if "rollout" in result:
            click.echo(format_rollout(result["rollout"]))


@click.command("monitor")
@click.option("--broker", required=True, metavar="HOST:PORT", help="the MQTT broker (TLS)")
@click.option("--keys", "keys_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="folder with the manufacturer CA (the service's certificate)")
@click.option("--duration", type=float, default=None, help="stop after this many seconds")
@click.option("--count", type=int, default=None, help="stop after this many messages")
@click.option("--client-id", default="iotctl-monitor", show_default=True,
              help="the persistent session's id (alerts wait for it while it is away)")
@click.option("--db", default=None, metavar="PATH|URL",
              help="the rollout store the monitor updates (and halts rollouts in) "
              "[default: KEYS/service/rollouts.sqlite]")
@click.option("--renew-certs", is_flag=True,
              help="answer devices' certificate renewal requests (needs the manufacturer "
              "CA's private key in --keys)")
@click.option("--json", "as_json", is_flag=True,
              help="one JSON object per line, then a summary (outcomes per release, rollouts)")
def monitor_cmd(broker, keys_dir, duration, count, client_id, db, renew_certs, as_json):
    """Show devices, telemetry, events and alerts; flag security anomalies; track update
    outcomes and halt failing rollouts."""
    def show(rec):
        if as_json:
            click.echo(json.dumps(rec, sort_keys=True))
            return
        click.echo(monitor.format_record(rec))
        for a in rec["anomalies"]:
            click.secho(f"  ANOMALY {a['anomaly']}: {a['device_id']}: {a['detail']}",
                        fg="red", bold=True)
        if "rollout" in rec:
            r = rec["rollout"]
            click.secho(f"  ROLLOUT {r['rollout']} {r['state'].upper()}: {r['reason']}",
                        fg="red", bold=True)

    updateserver.service_dir(keys_dir).mkdir(parents=True, exist_ok=True)
    with rollout.Store.open(db or rollout.default_db(keys_dir)) as store:
        mon = monitor.run(keys_dir, broker, show, duration, count, client_id, rollouts=store,
                          renew=renew_certs)
        summary = mon.summary()
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        for version, rel in sorted(summary["releases"].items()):
            click.echo(f"release {version}: " + ", ".join(
                f"{n} {s}" for s, n in sorted(rel["counts"].items())))
        for r in summary["rollouts"]:
            click.echo(format_rollout(r))
        for d in sorted(mon.devices.values(), key=lambda d: d["device_id"]):
            t = d["telemetry"] or {}
            click.echo(f"{d['device_id']}: {'online' if d['online'] else 'offline'}, version "
                       f"{d['version']}, {d['messages']} messages, {d['alerts']} alerts, last "
                       f"{t.get('temperature')} C")
        click.echo(f"{len(mon.anomalies)} anomalies")


COMMANDS = [serve_cmd, publish_cmd, monitor_cmd]
