"""CLI: ca init, provision (thin wrappers over host_tools.ca and host_tools.provision)."""

import json

import click

from .. import ca, provision
from ..errors import UsageError
from ..flashimage import BOARDS


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
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
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
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True,
              help="how many devices (several only with --image and {device_id})")
@click.option("--model", default=provision.DEFAULT_MODEL, show_default=True,
              help="the product model written into the identity and onto the label")
@click.option("--board", type=click.Choice(BOARDS),
              help="the board written into the factory record and the ledger; required with "
              "--image and --port (--sim is always unix)")
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
@click.option("--timeout", type=click.FloatRange(min=0.5), default=provision.DEFAULT_PORT_TIMEOUT,
              show_default=True, help="seconds to wait for the board on --port to answer")
@click.option("--labels", "labels_dir", type=click.Path(file_okay=False),
              help="write each device's label (PNG and PDF) here")
@click.option("--force", is_flag=True, help="replace a factory record already on the target "
              "(the replaced device is marked in the ledger and its label removed)")
@click.option("--soft-reset", is_flag=True, help="soft-reset the board before writing (--port)")
@click.option("--key-floor", type=int, default=1, show_default=True,
              help="lowest update-key serial the devices accept")
@click.option("--cloud", default=None, metavar="HOST:PORT",
              help="the MQTT broker the devices connect to (mutual TLS); none: no cloud link")
@click.option("--json", "as_json", is_flag=True,
              help="one JSON object per line and device, with its password (for the label printer)")
def provision_cmd(keys_dir, count, model, board, station, iterations, ledger, sim_dir, image,
                  port, timeout, labels_dir, force, soft_reset, key_floor, cloud, as_json):
    """Provision devices: unique id and password, key and certificate, factory record."""
    if sum(t is not None for t in (sim_dir, image, port)) != 1:
        raise UsageError("choose one target: --sim DIR, --image FILE or --port PORT")
    if not as_json and labels_dir is None:
        raise UsageError("the password must go somewhere: give --labels DIR or --json")
    if sim_dir is not None:
        if board not in (None, "unix"):
            raise UsageError(f"--sim is a simulated board (unix), not {board}")
        board = "unix"
    elif board is None:
        raise UsageError("--board is required with --image and --port: it is written into "
                         f"the factory record and the ledger (one of {', '.join(BOARDS)})")
    bar = None
    if count > 1:
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(console=Console(stderr=True), transient=True)
        task = bar.add_task("provisioning", total=count)
        bar.start()

    def progress(done, total, rec):
        # each device is reported as soon as it is done (click.echo flushes: a pipe to a
        # label printer gets it at once, not when the batch ends)
        if as_json:
            click.echo(json.dumps(rec.for_label(), sort_keys=True))
        else:
            labels = ", ".join(rec.labels.values())
            replaced = f"  replaces {rec.replaced}" if rec.replaced else ""
            click.echo(f"{rec.device_id}  {rec.model}  cert serial {rec.cert_serial}  "
                       f"{rec.target}  labels: {labels}{replaced}")
        if bar is not None:
            bar.update(task, completed=done)

    try:
        records = provision.provision(
            keys_dir, count, model=model, board=board, station=station, iterations=iterations,
            ledger=ledger, sim=sim_dir, image=image, port=port, labels=labels_dir, force=force,
            soft_reset=soft_reset, key_floor=key_floor, progress=progress,
            cloud=provision.parse_cloud(cloud) if cloud else None, timeout=timeout,
            waiting=lambda text: click.echo(text, err=True))
    finally:
        if bar is not None:
            bar.stop()
    if not as_json:
        click.echo(f"{len(records)} device(s) provisioned and entered in the ledger")


COMMANDS = [ca_group, provision_cmd]
