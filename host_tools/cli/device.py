"""CLI: push and status against a device's local TLS API (thin wrappers over push.py)."""

import json
import os
import time

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn
from rich.text import Text

from .. import push
from ..errors import RolledBack


def _device_options(func):
    func = click.option("--json", "as_json", is_flag=True,
                        help="print the outcome (or the error) as one JSON object")(func)
    func = click.option("--name", help="the name on the device's certificate (its id); "
                        "default: the host")(func)
    func = click.option("--pin", type=click.Path(exists=True, dir_okay=False),
                        help="trust exactly this device certificate instead of the CA")(func)
    func = click.option("--ca", type=click.Path(exists=True, dir_okay=False),
                        help="manufacturer CA certificate (e.g. KEYS/ca.crt)")(func)
    func = click.option("--password", envvar="IOTCTL_PASSWORD",
                        help="device password (or $IOTCTL_PASSWORD; prompted if absent)")(func)
    return click.option("--device", required=True, help="HOST:PORT of the device")(func)


def _connect(device, password, ca, pin, name, timeout):
    if password is None:
        password = click.prompt("device password", hide_input=True, err=True)
    return push.Device(device, password, ca=ca, pin=pin, name=name, timeout=timeout)


class AverageSpeed(ProgressColumn):
    """Bytes sent over the time since the upload started. (rich's TransferSpeedColumn
    samples the last moments, when a socket buffer swallows the tail at memory speed.)"""

    def render(self, task):
        elapsed = task.elapsed or 0
        if elapsed <= 0 or not task.completed:
            return Text("?", style="progress.data.speed")
        rate = task.completed / elapsed
        unit, div = ("MB/s", 1e6) if rate >= 1e6 else ("kB/s", 1e3)
        return Text(f"{rate / div:.1f} {unit}", style="progress.data.speed")


def _change_text(result):
    return {"upgrade": "upgrade", "downgrade": "DOWNGRADE", "same": "same version"}.get(
        result.get("change"), "version change unknown")


@click.command("push")
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False))
@_device_options
@click.option("--no-wait", is_flag=True, help="return once the device accepted the bundle")
@click.option("--timeout", type=click.FloatRange(min=0.5), default=120.0, show_default=True,
              help="seconds for the whole push: connect, upload, restart and confirmation")
@click.option("--allow-downgrade", is_flag=True,
              help="install a bundle older than the running version (refused without it)")
def push_cmd(bundle_file, device, password, ca, pin, name, as_json, no_wait, timeout,
             allow_downgrade):
    """Upload a signed bundle; wait for the device to confirm it or roll back."""
    dev = _connect(device, password, ca, pin, name, min(timeout, 30.0))
    size = os.path.getsize(bundle_file)
    if as_json:
        result = push.push(dev, bundle_file, wait=not no_wait, timeout=timeout,
                           allow_downgrade=allow_downgrade)
    else:
        click.echo(f"pushing to {device} (up to {timeout:g} s for the upload, the restart "
                   "and the confirmation)", err=True)
        started = time.monotonic()
        with Progress("[progress.description]{task.description}", BarColumn(),
                      DownloadColumn(), AverageSpeed(), console=Console(stderr=True)) as bar:
            task = bar.add_task(f"uploading {os.path.basename(bundle_file)}", total=size)
            result = push.push(dev, bundle_file, progress=lambda n: bar.update(task, completed=n),
                               wait=not no_wait, timeout=timeout, allow_downgrade=allow_downgrade)
        result.setdefault("elapsed_s", round(time.monotonic() - started, 3))
    if result["result"] == "rolled_back":
        raise RolledBack(f"the device rolled back to {result['version']}: {result['reason']}",
                         {"result": result})
    if as_json:
        click.echo(json.dumps({"ok": True, **result}, indent=2))
    elif result["result"] == "confirmed":
        click.echo(f"confirmed: {result['from']} -> {result['version']} ({_change_text(result)}, "
                   f"slot {result['slot']})")
    else:
        click.echo(f"installed {result['installed']} into slot {result['slot']} "
                   f"({result['from']} -> {result['installed']}, {_change_text(result)}); the "
                   "device is restarting into it")


@click.command("status")
@_device_options
@click.option("--timeout", type=click.FloatRange(min=0.5), default=30.0, show_default=True,
              help="seconds to wait for each answer from the device")
def status_cmd(device, password, ca, pin, name, as_json, timeout):
    """The device's version, slots, mode, uptime, update state and thermostat."""
    st = _connect(device, password, ca, pin, name, timeout).status()
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    t = st["thermostat"]
    click.echo(f"{st['model']} {st['device_id']}: version {st['version']} in slot {st['slot']}"
               + (" (trial)" if st["trial"] else "") + f", mode {st['mode']}, "
               f"up {st['uptime_s']} s")
    click.echo(f"thermostat: {t['temperature']} C, target {t['target']}, "
               f"heating {'on' if t['heating'] else 'off'}")
    click.echo(f"update: {st['update'].get('state')}; last event: {st['last_event']}")


COMMANDS = [push_cmd, status_cmd]
