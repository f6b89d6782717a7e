"""Running esptool, espsecure and espefuse. Each runs through its Python entry point in a
child process (host_tools/esp/toolrun.py), which can be stopped (a timeout, Ctrl-C) and whose
progress is passed through as it comes; a failure comes back as the exception the tool
raised (esptool.FatalError and its message, or click's error for a bad argument), never
read out of the tool's human output. The argv shown to a person (dry runs, plans) is the
command line that does the same: `python -m TOOL ARGS`."""

import collections
import json
import shlex
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from ..errors import ToolError, Unreachable, UsageError
from .toolrun import TOOLS


def tool_argv(tool, *args):
    """argv that runs `tool` (esptool, espsecure, espefuse) from this Python environment."""
    return [sys.executable, "-m", tool, *map(str, args)]


def format_argv(argv):
    return shlex.join(str(a) for a in argv)


def _split(argv):
    if len(argv) < 3 or argv[1] != "-m" or argv[2] not in TOOLS:
        raise UsageError(f"not an esptool, espsecure or espefuse command: {format_argv(argv)}")
    return argv[2], [str(a) for a in argv[3:]]


def _last_line(output):
    """When the child died without reporting (killed), the last thing it printed, as is."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def run_tool(argv, stream=None, timeout=None):
    """Run a tool; return its output. A failure -> ToolError with the tool's own message.
    With `stream` (a callable taking text), output is passed through live (progress).
    With `timeout` (seconds), a tool still running then is stopped: Unreachable."""
    name, args = _split(argv)
    # streamed output is only kept for the last line; otherwise all of it is returned
    tail = collections.deque(maxlen=64 if stream is not None else None)
    timed_out = threading.Event()
    with tempfile.TemporaryDirectory(prefix="iotctl-tool-") as tmp:
        error_file = Path(tmp) / "error.json"
        child = [sys.executable, "-m", "host_tools.esp.toolrun", str(error_file), name, *args]
        try:
            with subprocess.Popen(child, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL) as proc:
                def expire():
                    timed_out.set()
                    proc.kill()

                timer = threading.Timer(timeout, expire) if timeout else None
                if timer:
                    timer.start()
                try:
                    while chunk := proc.stdout.read1(4096):
                        text = chunk.decode(errors="replace")
                        tail.append(text)
                        if stream is not None:
                            stream(text)
                    proc.wait()
                except BaseException:  # Ctrl-C or SIGTERM: the tool does not outlive us
                    proc.kill()
                    raise
                finally:
                    if timer:
                        timer.cancel()
            output, rc = "".join(tail), proc.returncode
        except OSError as exc:
            raise ToolError(f"cannot run {name}: {exc}") from None
        error = json.loads(error_file.read_text()) if error_file.is_file() else None
    message = error["message"] if error else _last_line(output)
    message = " ".join(ln.strip() for ln in message.splitlines() if ln.strip())  # one line
    if timed_out.is_set():
        raise Unreachable(f"{name} did not finish within {timeout:g} s (stopped): {message}")
    if rc != 0:
        raise ToolError(f"{name} failed (exit {rc}): {message}")
    return output
