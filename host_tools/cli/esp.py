"""CLI: flash and secure-boot (thin wrappers over host_tools.esp)."""

import json

import click
from rich.console import Console
from rich.markup import escape

from .. import esp
from ..errors import UsageError

CONFIRM_WORD = "BURN"


def _emit(obj, as_json, text):
    click.echo(json.dumps(obj, indent=2) if as_json else text)


def _job_dict(board, job):
    return {"board": board, "chip": job.chip, "argv": job.argv, "commands": job.commands(),
            "images": [{"name": im.name, "offset": im.offset, "path": im.path}
                       for im in job.images],
            "output": job.output, "workdir": job.workdir, "ran": job.ran,
            "checked": job.checked}


@click.command("flash")
@click.option("--board", required=True, type=click.Choice(esp.CHIPS),
              help="the board: its chip, partition table and offsets")
@click.option("--port", "-p", help="serial port (default: esptool finds one)")
@click.option("--firmware", required=True, type=click.Path(dir_okay=False),
              help="the MicroPython image, written to ota_0 (checked: app image for "
              "the board's chip that fits the partition)")
@click.option("--bootloader", type=click.Path(dir_okay=False),
              help="second-stage bootloader image (signed, for production); without it the "
              "board keeps the bootloader it has")
@click.option("--factory", type=click.Path(dir_okay=False), help="factory data image (fctry)")
@click.option("--data", type=click.Path(dir_okay=False), help="data filesystem image (vfs)")
@click.option("--flash-size", help="board variant, e.g. 8MB (default: the board's own)")
@click.option("--encrypt-key", type=click.Path(dir_okay=False),
              help="encrypt images on the host with this flash-encryption key")
@click.option("--baud", type=click.IntRange(9600, 5_000_000), default=esp.DEFAULT_BAUD,
              show_default=True, help="serial speed esptool flashes at")
@click.option("--before", type=click.Choice(esp.BEFORE), default="default-reset",
              show_default=True, help="how esptool resets the chip into its ROM bootloader")
@click.option("--after", type=click.Choice(esp.AFTER), default="hard-reset", show_default=True,
              help="how esptool resets the chip when done")
@click.option("--timeout", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="seconds esptool may take before it is stopped")
@click.option("--merge", is_flag=True,
              help="write one production image (needs --bootloader) instead of flashing")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="merged image (--merge)")
@click.option("--dry-run", is_flag=True, help="print the exact commands, run nothing")
@click.option("--workdir", type=click.Path(file_okay=False),
              help="where the generated partition table and otadata go (default: temporary)")
@click.option("--json", "as_json", is_flag=True, help="print the job as one JSON object")
def flash(board, port, firmware, bootloader, factory, data, flash_size, encrypt_key, baud,
          before, after, timeout, merge, output, dry_run, workdir, as_json):
    """Flash firmware, factory data and data filesystem (or merge them into one image).

    Every image is checked before esptool runs: the firmware as `iotctl sign` checks it,
    the bootloader for the board's chip."""
    if merge != bool(output):
        raise UsageError("--merge and -o/--output go together")
    if bootloader is None and not merge:
        click.echo("warning: no --bootloader: the board keeps the second-stage bootloader it "
                   "has (a blank or erased chip will not boot)", err=True)
    job = esp.flash(board, firmware, factory=factory, data=data, bootloader=bootloader,
                    port=port, merge_out=output, flash_size=flash_size,
                    encrypt_key=encrypt_key, dry_run=dry_run, workdir=workdir,
                    stream=(lambda text: None) if as_json else None, baud=baud,
                    before=before, after=after, timeout=timeout)
    lines = [esp.format_argv(argv) for argv in job.commands()]
    app = job.checked.get("ota_0", {})
    what = f"{app.get('project', '?')} {app.get('app_version', '?')}"
    if dry_run:
        lines.append(f"# dry run: nothing ran; generated files are in {job.workdir}")
    elif output:
        lines = [f"wrote {output} ({what}, {len(job.images)} images)"]
    else:
        lines = [f"flashed {board}{' on ' + port if port else ''}: {what} in ota_0, "
                 f"{len(job.images)} images"]
    _emit(_job_dict(board, job), as_json, "\n".join(lines))


@click.group("secure-boot")
def secure_boot():
    """Secure Boot v2 and flash encryption: keys, eFuse plan and burn, image signing."""


_KEYS_HELP = "the Secure Boot and flash-encryption key folder"
_BOARD_HELP = "the board (its chip decides the scheme and the eFuses)"


def _target_options(func):
    func = click.option("--json", "as_json", is_flag=True,
                        help="print the result as one JSON object")(func)
    func = click.option("--port", "-p", help="serial port of the chip")(func)
    func = click.option("--virt", type=click.Path(dir_okay=False),
                        help="use espefuse virtual eFuses persisted in this file")(func)
    func = click.option("--keys", "keys_dir", default="keys/secure-boot", show_default=True,
                        type=click.Path(file_okay=False), help=_KEYS_HELP)(func)
    return click.option("--board", "chip", required=True, type=click.Choice(esp.CHIPS),
                        help=_BOARD_HELP)(func)


def _plan_dict(plan):
    return {"chip": plan["chip"], "target": plan["target"].describe(), "scheme": plan["scheme"],
            "keys": plan["keys"], "missing": plan["missing"], "prepare": plan["prepare"],
            "steps": [{"title": s.title, "argv": s.argv} for s in plan["steps"]]}


def _plan_text(plan):
    out = [f"Secure Boot v2 ({plan['scheme']}) and flash encryption for {plan['chip']} on "
           f"{plan['target'].describe()}", "", "Prepare keys (reversible):"]
    out += [f"  {esp.format_argv(argv)}" for argv in plan["prepare"]]
    out += [f"  MISSING: {path}" for path in plan["missing"]]
    out += ["", "Irreversible eFuse burns, in this order:"]
    for i, step in enumerate(plan["steps"], 1):
        out += [f"  {i}. {step.title}", f"     {esp.format_argv(step.argv)}"]
    return "\n".join(out)


@secure_boot.command("plan")
@_target_options
def plan_cmd(chip, keys_dir, virt, port, as_json):
    """Print the keys and the irreversible eFuse steps in order; changes nothing."""
    plan = esp.plan_secure_boot(chip, keys_dir, port=port, virt=virt)
    _emit(_plan_dict(plan), as_json, _plan_text(plan))


@secure_boot.command("apply")
@_target_options
@click.option("--yes", is_flag=True, help="skip the typed confirmation (factory line)")
@click.option("--keep-fe-key", is_flag=True,
              help="keep the host copy of the flash-encryption key after burning")
@click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="seconds each read of the eFuses may take (a burn is never interrupted)")
def apply_cmd(chip, keys_dir, virt, port, as_json, yes, keep_fe_key, timeout):
    """Burn the production eFuses after a typed confirmation (irreversible)."""
    console = Console(stderr=as_json)

    def confirm(plan):
        click.echo(_plan_text(plan), err=as_json)
        word = click.prompt(f"\nThis cannot be undone. Type {CONFIRM_WORD} to burn", default="",
                            show_default=False, err=as_json)
        if word.strip() != CONFIRM_WORD:
            click.echo("confirmation word not typed; nothing was burnt", err=True)
            raise click.Abort()
        return True

    def report(i, total, step):
        console.print(f"[bold]\\[{i}/{total}][/bold] {escape(step.title)}", highlight=False)

    result = esp.apply_secure_boot(chip, keys_dir, port=port, virt=virt,
                                   confirm=None if yes else confirm, report=report,
                                   keep_fe_key=keep_fe_key, timeout=timeout)
    _emit(result, as_json,
          f"{chip}: secure boot v2 and flash encryption burnt on {result['target']}; "
          f"key digest {result['digest']}"
          + ("; host copy of the flash-encryption key deleted" if result["fe_key_deleted"]
             else ""))


@secure_boot.command("keys")
@click.option("--board", "chip", required=True, type=click.Choice(esp.CHIPS), help=_BOARD_HELP)
@click.option("--keys", "keys_dir", default="keys/secure-boot", show_default=True,
              type=click.Path(file_okay=False), help=_KEYS_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
def keys_cmd(chip, keys_dir, as_json):
    """Create missing keys (signing key, flash-encryption key; 0600) and the key digest."""
    paths = esp.prepare_keys(chip, keys_dir, generate=True)
    with open(paths["digest"], "rb") as f:
        digest = f.read().hex()
    _emit({**paths, "digest_hex": digest}, as_json,
          "\n".join(f"{k}: {v}" for k, v in paths.items()) + f"\nkey digest: {digest}")


@secure_boot.command("sign")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--key", required=True, type=click.Path(dir_okay=False),
              help="the Secure Boot v2 signing key (PEM)")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="the signed image to write")
def sign_cmd(image, key, output):
    """Sign a bootloader or application image with the Secure Boot v2 key."""
    esp.sign_image(image, key, output)
    click.echo(f"signed {image} -> {output}")


@secure_boot.command("verify")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--key", required=True, type=click.Path(dir_okay=False),
              help="public (or private) signing key, PEM")
def verify_cmd(image, key):
    """Verify an image's Secure Boot v2 signature."""
    click.echo(f"{image}: {esp.verify_image(image, key)}")


COMMANDS = [flash, secure_boot]
