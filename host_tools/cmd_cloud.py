"""CLI: serve, publish, monitor (thin wrappers over host_tools.updateserver and
host_tools.monitor): the service side of the cloud link."""

import json

import click

from . import monitor, updateserver


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
@click.option("--timeout", type=click.FloatRange(min=1), default=15.0, show_default=True,
              help="seconds to wait for the broker to acknowledge the announcement")
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
def publish_cmd(bundle_file, channel, server_url, broker, keys_dir, directory, spread_s,
                timeout, as_json):
    """Put a verified bundle on the update server and announce it on fleet/<product>/CHANNEL."""
    result = updateserver.publish(bundle_file, channel, server_url, broker, keys_dir, directory,
                                  spread_s, timeout=timeout)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        a = result["announcement"]
        click.echo(f"announced {a['version']} on {result['topic']}: {a['url']} "
                   f"({a['size']} bytes, sha256 {a['sha256'][:16]}...)")


@click.command("monitor")
@click.option("--broker", required=True, metavar="HOST:PORT", help="the MQTT broker (TLS)")
@click.option("--keys", "keys_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="folder with the manufacturer CA (the service's certificate)")
@click.option("--duration", type=float, default=None, help="stop after this many seconds")
@click.option("--count", type=int, default=None, help="stop after this many messages")
@click.option("--client-id", default="iotctl-monitor", show_default=True,
              help="the persistent session's id (alerts wait for it while it is away)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def monitor_cmd(broker, keys_dir, duration, count, client_id, as_json):
    """Show devices, telemetry, events and alerts; flag security anomalies."""
    def show(rec):
        if as_json:
            click.echo(json.dumps(rec, sort_keys=True))
            return
        click.echo(monitor.format_record(rec))
        for a in rec["anomalies"]:
            click.secho(f"  ANOMALY {a['anomaly']}: {a['device_id']}: {a['detail']}",
                        fg="red", bold=True)

    mon = monitor.run(keys_dir, broker, show, duration, count, client_id)
    if not as_json:
        for d in sorted(mon.devices.values(), key=lambda d: d["device_id"]):
            t = d["telemetry"] or {}
            click.echo(f"{d['device_id']}: {'online' if d['online'] else 'offline'}, version "
                       f"{d['version']}, {d['messages']} messages, {d['alerts']} alerts, last "
                       f"{t.get('temperature')} C")
        click.echo(f"{len(mon.anomalies)} anomalies")


COMMANDS = [serve_cmd, publish_cmd, monitor_cmd]
