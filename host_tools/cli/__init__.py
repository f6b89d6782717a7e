"""`iotctl`: one click group; each command is a thin wrapper over a library function.
This module is the one place that maps errors to messages and exit codes."""

import json
import signal
import sys

import click

from ..errors import EXIT_CODES, IotctlError, exit_code_table


class _Group(click.Group):
    """A group whose command list shows each command's whole first sentence (click cuts
    it at 45 characters), and that ends its help with the exit-code table."""

    def format_commands(self, ctx, formatter):
        rows = [(name, cmd.get_short_help_str(limit=200))
                for name, cmd in ((n, self.get_command(ctx, n)) for n in self.list_commands(ctx))
                if cmd is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def format_epilog(self, ctx, formatter):
        formatter.write_paragraph()
        formatter.write_text("Exit codes (with --json, every outcome is one JSON object on "
                             "stdout; an error has \"error\": {\"code\", \"name\", \"message\"}):")
        with formatter.indentation():
            for line in exit_code_table().splitlines():
                formatter.write(f"{'':>{formatter.current_indent}}{line}\n")


@click.group(cls=_Group, context_settings={"max_content_width": 100})
@click.version_option(package_name="iot-secure-firmware")
def cli():
    """Host tools for the secure IoT reference firmware."""


def _register():
    """Add every command module's COMMANDS to the group; runs once, at import."""
    from . import cloud, core, device, esp, evidence, ledger, provision, report, rollout, sign, sim

    for module in (core, sign, sim, provision, ledger, device, cloud, rollout, esp, report,
                   evidence):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM, so that every `finally` and cleanup runs (a
    provisioning step removes its label and rolls back its ledger row) before the exit."""


def _on_sigterm(signum, frame):
    raise Terminated(143)


def _wants_json(args):
    args = list(args)
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def _fail(code, message, as_json, details=None):
    """Report an error: one JSON object on stdout with --json, else `error: ...` on stderr."""
    if as_json:
        error = {"code": code, "name": EXIT_CODES.get(code, ("failed",))[0], "message": message}
        if details:
            error.update(details)
        click.echo(json.dumps({"ok": False, "error": error}))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv=None):
    """Entry point: run the group and map the package's errors to messages and exit codes."""
    args = sys.argv[1:] if argv is None else list(argv)
    as_json = _wants_json(args)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (a test runner's worker): leave it
        previous = None
    try:
        cli.main(args=args, prog_name="iotctl", standalone_mode=False)
    except IotctlError as exc:
        _fail(exc.exit_code, str(exc), as_json, exc.details)
    except click.exceptions.Abort:
        _fail(130, "interrupted; nothing half-made was kept", as_json)
    except Terminated:
        _fail(143, "terminated (SIGTERM); nothing half-made was kept", as_json)
    except click.exceptions.Exit as exc:  # --help, --version
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        if as_json:
            _fail(exc.exit_code, exc.format_message(), True)
        exc.show()
        sys.exit(exc.exit_code)
    except OSError as exc:  # a file the library did not expect to be unusable
        where = f" ({exc.filename})" if exc.filename else ""
        _fail(1, f"{exc.strerror or exc}{where}", as_json)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    sys.exit(0)
