"""CLI: `iotctl sim ...`, simulated devices (thin wrappers over host_tools.sim)."""

import json

import click

from .. import sim


def _show(st, as_json):
    if as_json:
        click.echo(json.dumps(st, indent=2))
    else:
        click.echo(f"{st['state']}: mode {st['mode']}, slot {st['slot']}, version {st['version']}"
                   + (" (trial)" if st.get("trial") else ""))
        if st.get("last"):
            click.echo(f"last event: {st['last']}")
        for r in st.get("reasons") or []:
            click.echo(f"refused: {r}")


@click.group("sim")
def sim_group():
    """Simulated devices (board `unix`)."""


@sim_group.command("create")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--keys", "keys_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="key folder: trust anchors, and the CA that provisions the device")
@click.option("--bundle", "bundle_file", required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="the signed app bundle installed in slot A")
@click.option("--device-id", default=None,
              help="the id of a device without a CA (with a CA the factory draws a random id)")
@click.option("--labels", "labels_dir", type=click.Path(file_okay=False),
              help="write the device's label (password, PNG and PDF) here; without it (and "
              "without --json) the password is printed once")
@click.option("--cloud", default=None, metavar="HOST:PORT",
              help="the MQTT broker the device connects to (in its factory identity)")
@click.option("--json", "as_json", is_flag=True,
              help="print the device as one JSON object, with its password")
def create(directory, keys_dir, bundle_file, device_id, labels_dir, cloud, as_json):
    """A new simulated device: flash image, trust anchors, BUNDLE installed in slot A.

    With a manufacturer CA in KEYS the device is provisioned as on the factory line; its
    password goes on the label (--labels), into the JSON (--json), or is printed once."""
    from ..provision import parse_cloud

    info = sim.create(directory, keys_dir, bundle_file, device_id, labels=labels_dir,
                      cloud=parse_cloud(cloud) if cloud else None)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"created {info['device_id']} in {directory} with {info['version']} in slot a")
    if "password" not in info:
        click.echo(f"no manufacturer CA in {keys_dir}: the device has no password and no "
                   "local API (run `iotctl ca init` first for a provisioned device)")
    elif labels_dir:
        click.echo(f"password: on the label {info['labels']['png']} (and .pdf)")
    else:
        click.echo(f"password: {info['password']}\n(shown once: it is stored nowhere else; "
                   "give --labels DIR to print a label instead)")


@sim_group.command("start")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the state as one JSON object")
def start(directory, as_json):
    """Power on; returns once the boot stage verified a slot or entered alert-only mode."""
    _show(sim.start(directory), as_json)


@sim_group.command("stop")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def stop(directory):
    """Power off."""
    click.echo("stopped" if sim.stop(directory) else "was not running")


@sim_group.command("powercut")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def powercut(directory):
    """Cut the power at once (kill the device process mid-whatever)."""
    click.echo("power cut" if sim.powercut(directory) else "was not running")


@sim_group.command("reboot")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the state as one JSON object")
def reboot(directory, as_json):
    """Reset the running device (machine.reset()) and wait for the new boot."""
    _show(sim.reboot(directory), as_json)


@sim_group.command("status")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the state as one JSON object")
def status(directory, as_json):
    """State, mode, slot and version."""
    _show(sim.status(directory), as_json)


@sim_group.command("install")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the installer's answer as JSON")
def install(directory, bundle_file, as_json):
    """Write BUNDLE into the inactive slot through the device's installer (running or not)."""
    answer = sim.install(directory, bundle_file)
    click.echo(json.dumps(answer, indent=2) if as_json else
               f"installed {answer.get('version')} into slot {answer.get('slot')}; "
               "it boots on the next start and must confirm itself")


COMMANDS = [sim_group]
