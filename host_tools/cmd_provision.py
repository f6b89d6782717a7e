"""CLI: ca init, provision (thin wrappers over host_tools.ca and host_tools.provision)."""

import json

import click

from . import ca, provision
from .errors import UsageError


@click.group("ca")
def ca_group():
    """The manufacturer CA that issues device certificates."""


@ca_group.command("init")
@click.option("--dir", "directory", default="keys", show_default=True, type=click.Path(),
              help="the key folder (beside the signing keys)")
@click.option("--name", default=ca.DEFAULT_NAME, show_default=True, help="the CA's common name")
@click.option("--org", default=ca.DEFAULT_ORG, show_default=True, help="the manufacturer")
@click.option("--days", type=int, default=ca.CA_VALIDITY_DAYS, show_default=True,
              help="validity; device certificates end with the CA")
@click.option("--json", "as_json", is_flag=True)
def ca_init(directory, name, org, days, as_json):
    """Create the manufacturer CA: EC P-256 key (0600) and self-signed certificate."""
    info = ca.init(directory, name=name, org=org, validity_days=days)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(f"manufacturer CA created in {directory}: {info['subject']}\n"
                   f"certificate SHA-256 {info['sha256']}\n"
                   f"{directory}/{ca.CA_KEY} is mode 0600: keep it on the factory station only")


@click.command("provision")
@click.option("--keys", "keys_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="folder with the CA and the trust anchors")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--model", default=provision.DEFAULT_MODEL, show_default=True)
@click.option("--board", default="unix", show_default=True, help="unix, esp32, esp32s3, esp32c3")
@click.option("--station", default=None, help="name of this station [default: host name]")
@click.option("--iterations", type=int, default=provision.DEFAULT_ITERATIONS, show_default=True,
              help="PBKDF2 iterations of the password record (cost of one check on the device)")
@click.option("--ledger", default=None, help="SQLite file or postgresql:// URL "
              "[default: KEYS/ledger.sqlite]")
@click.option("--sim", "sim_dir", type=click.Path(file_okay=False),
              help="target: the simulated board in this folder")
@click.option("--image", type=click.Path(dir_okay=False),
              help="target: fctry partition image file ({device_id} is replaced)")
@click.option("--port", help="target: a board running MicroPython on this serial port")
@click.option("--labels", "labels_dir", type=click.Path(file_okay=False),
              help="write each device's label (PNG and PDF) here")
@click.option("--force", is_flag=True, help="replace a factory record already on the target")
@click.option("--soft-reset", is_flag=True, help="soft-reset the board before writing (--port)")
@click.option("--key-floor", type=int, default=1, show_default=True,
              help="lowest update-key serial the devices accept")
@click.option("--cloud", default=None, metavar="HOST:PORT",
              help="the MQTT broker the devices connect to (mutual TLS); none: no cloud link")
@click.option("--json", "as_json", is_flag=True,
              help="one JSON object per line and device, with its password (for the label printer)")
def provision_cmd(keys_dir, count, model, board, station, iterations, ledger, sim_dir, image,
                  port, labels_dir, force, soft_reset, key_floor, cloud, as_json):
    """Provision devices: unique id and password, key and certificate, factory record."""
    if sum(t is not None for t in (sim_dir, image, port)) != 1:
        raise UsageError("choose one target: --sim DIR, --image FILE or --port PORT")
    if not as_json and labels_dir is None:
        raise UsageError("the password must go somewhere: give --labels DIR or --json")
    progress = None
    bar = None
    if count > 1:
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(console=Console(stderr=True), transient=True)
        task = bar.add_task("provisioning", total=count)
        progress = lambda done, total, rec: bar.update(task, completed=done)  # noqa: E731
        bar.start()
    try:
        records = provision.provision(
            keys_dir, count, model=model, board=board, station=station, iterations=iterations,
            ledger=ledger, sim=sim_dir, image=image, port=port, labels=labels_dir, force=force,
            soft_reset=soft_reset, key_floor=key_floor, progress=progress,
            cloud=provision.parse_cloud(cloud) if cloud else None)
    finally:
        if bar is not None:
            bar.stop()
    for rec in records:
        if as_json:
            click.echo(json.dumps(rec.for_label(), sort_keys=True))
        else:
            labels = ", ".join(rec.labels.values())
            click.echo(f"{rec.device_id}  {rec.model}  cert {rec.cert_sha256[:16]}  "
                       f"{rec.target}  labels: {labels}")
    if not as_json:
        click.echo(f"{len(records)} device(s) provisioned and entered in the ledger")


COMMANDS = [ca_group, provision_cmd]
