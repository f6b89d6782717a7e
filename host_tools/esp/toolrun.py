"""The child side of esp.tools.run_tool: `python -m host_tools.esp.toolrun ERROR_FILE TOOL ARGS`
runs esptool, espsecure or espefuse through its Python entry point (the tool's click
command, as `TOOL.main(argv)` does) and, when the tool fails, writes the exception it raised
(its class and message) as JSON to ERROR_FILE, so the parent never reads the tool's
human output to learn why. Progress and messages still go to stdout as the tool prints them."""

import importlib
import json
import sys

TOOLS = ("esptool", "espsecure", "espefuse")


def _report(path, kind, message, code=2):
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"kind": kind, "message": message}, f)
    sys.exit(code)


def main(argv):
    error_file, tool, args = argv[0], argv[1], argv[2:]
    if tool not in TOOLS:
        _report(error_file, "UsageError", f"not one of {', '.join(TOOLS)}: {tool}")
    import click
    import serial

    module = importlib.import_module(tool)
    extra = {} if tool == "espsecure" else {"esp": None}  # esptool/espefuse take a connection
    try:
        module.cli(args=args, standalone_mode=False, **extra)
    except click.ClickException as exc:  # a bad option or file: what `--help` would say
        _report(error_file, type(exc).__name__, exc.format_message())
    except click.exceptions.Abort:
        _report(error_file, "Abort", "interrupted", 130)
    except serial.SerialException as exc:
        _report(error_file, "SerialException", str(exc))
    except Exception as exc:  # esptool.FatalError and its subclasses, a key the tool refused
        _report(error_file, type(exc).__name__, str(exc))


if __name__ == "__main__":
    main(sys.argv[1:])
