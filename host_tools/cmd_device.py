"""CLI: push and status against a device's local TLS API (thin wrappers over push.py)."""

import json
import os

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from . import push
from .errors import RolledBack


def _device_options(func):
    func = click.option("--json", "as_json", is_flag=True)(func)
    func = click.option("--name", help="the name on the device's certificate (its id); "
                        "default: the host")(func)
    func = click.option("--pin", type=click.Path(exists=True, dir_okay=False),
                        help="trust exactly this device certificate instead of the CA")(func)
    func = click.option("--ca", type=click.Path(exists=True, dir_okay=False),
                        help="manufacturer CA certificate (e.g. KEYS/ca.crt)")(func)
    func = click.option("--password", envvar="IOTCTL_PASSWORD",
                        help="device password (or $IOTCTL_PASSWORD; prompted if absent)")(func)
    return click.option("--device", required=True, help="HOST:PORT of the device")(func)


def _connect(device, password, ca, pin, name):
    if password is None:
        password = click.prompt("device password", hide_input=True)
    return push.Device(device, password, ca=ca, pin=pin, name=name)


@click.command("push")
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False))
@_device_options
@click.option("--no-wait", is_flag=True, help="return once the device accepted the bundle")
@click.option("--timeout", type=float, default=120.0, show_default=True)
def push_cmd(bundle_file, device, password, ca, pin, name, as_json, no_wait, timeout):
    """Upload a signed bundle; wait for the device to confirm it or roll back."""
    dev = _connect(device, password, ca, pin, name)
    size = os.path.getsize(bundle_file)
    if as_json:
        result = push.push(dev, bundle_file, wait=not no_wait, timeout=timeout)
    else:
        with Progress("[progress.description]{task.description}", BarColumn(),
                      DownloadColumn(), TransferSpeedColumn()) as bar:
            task = bar.add_task(f"uploading {os.path.basename(bundle_file)}", total=size)
            result = push.push(dev, bundle_file, progress=lambda n: bar.update(task, completed=n),
                               wait=not no_wait, timeout=timeout)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        if result["result"] == "rolled_back":
            raise RolledBack(f"the device rolled back to {result['version']}")
    elif result["result"] == "confirmed":
        click.echo(f"confirmed: {result['from']} -> {result['version']} (slot {result['slot']})")
    elif result["result"] == "rolled_back":
        raise RolledBack(f"the device rolled back to {result['version']}: {result['reason']}")
    else:
        click.echo(f"installed {result['installed']} into slot {result['slot']}; the device is "
                   "restarting into it")


@click.command("status")
@_device_options
def status_cmd(device, password, ca, pin, name, as_json):
    """The device's version, slots, mode, uptime, update state and thermostat."""
    st = _connect(device, password, ca, pin, name).status()
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
