"""`iotctl`: one click group; each command is a thin wrapper over a library function."""

import sys

import click

from .errors import IotctlError


@click.group()
@click.version_option(package_name="iot-secure-firmware")
def cli():
    """Host tools for the secure IoT reference firmware."""


def _register():
    from . import (cmd_cloud, cmd_core, cmd_device, cmd_esp, cmd_firmware, cmd_provision,
                   cmd_report, cmd_rollout, cmd_sim)

    for module in (cmd_core, cmd_firmware, cmd_sim, cmd_provision, cmd_device, cmd_cloud,
                   cmd_rollout, cmd_esp, cmd_report):
        for command in module.COMMANDS:
            cli.add_command(command)


def main(argv=None):
    """Entry point: run the group and map the package's errors to messages and exit codes."""
    _register()
    try:
        cli.main(args=argv, standalone_mode=False)
    except IotctlError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(0)
