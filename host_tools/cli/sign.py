"""CLI: `sign --kind firmware`: a MicroPython image wrapped in a signed update bundle (thin
wrapper over host_tools.esp.micropython_image)."""

import json

import click

from .. import esp
from ..esp import micropython_image


@click.command("sign")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--kind", required=True, type=click.Choice(["firmware"]),
              help="firmware: a MicroPython image for the next OTA partition "
              "(app bundles come from `iotctl build`)")
@click.option("--keys", "keys_dir", required=True, type=click.Path(file_okay=False),
              help="the update-key folder (iotctl keys init)")
@click.option("--board", required=True, type=click.Choice(esp.CHIPS),
              help="the board the image is built for (its chip and OTA partition size)")
@click.option("--version", "version", required=True, help="MAJOR.MINOR.PATCH")
@click.option("--security-version", type=int, required=True,
              help="anti-rollback floor the device rises to once it confirms the image")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="the bundle file to write")
@click.option("--secure-boot-key", type=click.Path(dir_okay=False),
              help="first sign the image for Secure Boot v2 with this key (espsecure)")
@click.option("--flash-size", help="board variant, e.g. 8MB (default: the board's own)")
@click.option("--product", help="default: the product of firmware/manifest.json")
@click.option("--notes", default="", help="release notes shown to the owner")
@click.option("--security-fix", is_flag=True, help="mark the update as a security fix")
@click.option("--expires", type=int, default=None, help="Unix time after which devices refuse it")
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
def sign_cmd(image, kind, keys_dir, board, version, security_version, output, secure_boot_key,
             flash_size, product, notes, security_fix, expires, as_json):
    """Wrap a MicroPython image in a signed firmware bundle for BOARD."""
    _blob, info = micropython_image.build(
        image, keys_dir, board, version, security_version, out=output,
        secure_boot_key=secure_boot_key, notes=notes, security_fix=security_fix, expires=expires,
        product=product, flash_size=flash_size)
    if as_json:
        click.echo(json.dumps({"output": output, "kind": kind, **info}, indent=2))
        return
    click.echo(f"{output}: {info['bundle_size']} bytes, firmware {version} for {board} "
               f"({info['project']} {info['app_version']}, {info['size']} of "
               f"{info['capacity']} bytes), security version {security_version}, key serial "
               f"{info['key_serial']}"
               + (", Secure Boot v2 signed" if info["signed"] else ", no Secure Boot signature"))


COMMANDS = [sign_cmd]
