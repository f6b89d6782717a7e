"""Provisioning's serial-port target: a board running MicroPython, reached through mpremote's
raw REPL on its console, gets its factory record written and read back; a board held in ROM
download mode is told apart from a silent one. `serial_sim` puts a simulated board on a
pseudo-terminal so the same path is tested without hardware."""

import base64
import contextlib
import hashlib
import io
import json
import os
import subprocess
import time
from pathlib import Path

from . import flashimage, mpy
from .errors import DeviceError, Unreachable

DEVSCRIPT = Path(__file__).resolve().parent / "devscripts" / "factory_write.py"


def _platform(board):
    return "linux" if board == "unix" else "esp32"


# The ROM bootloader's SYNC command, SLIP-framed (esptool's serial protocol), and the start of
# its answer: what tells a board held in ROM download mode from one that is just silent.
ROM_SYNC = b"\xc0\x00\x08\x24\x00\x00\x00\x00\x00\x07\x07\x12\x20" + b"\x55" * 32 + b"\xc0"
ROM_SYNC_REPLY = b"\xc0\x01\x08"
DEFAULT_PORT_TIMEOUT = 30.0


def rom_download_mode(transport, wait=0.5):
    """Whether the board on `transport` answers the ROM bootloader's SYNC (it was reset
    into download mode, or holds no firmware)."""
    serial = transport.serial
    try:
        serial.reset_input_buffer()
        serial.write(ROM_SYNC)
        end = time.monotonic() + wait
        got = b""
        while time.monotonic() < end and ROM_SYNC_REPLY not in got:
            got += serial.read(serial.in_waiting or 1)
    except OSError:
        return False
    return ROM_SYNC_REPLY in got


def _enter_repl(transport, port, soft_reset, timeout):
    from mpremote.transport import TransportError

    try:
        # mpremote prints what it read when it gives up: not on our stdout (--json)
        with contextlib.redirect_stdout(io.StringIO()):
            transport.enter_raw_repl(soft_reset=soft_reset, timeout_overall=timeout)
    except TransportError:
        if rom_download_mode(transport):
            raise Unreachable(
                f"the board on {port} is in ROM download mode (it answered the ROM "
                "bootloader, not MicroPython): flash MicroPython with `iotctl flash`, or reset "
                "it without holding BOOT/IO0, then provision again") from None
        raise Unreachable(f"no MicroPython REPL answered on {port} within {timeout:g} s "
                          "(is MicroPython running, at 115200 baud, and the port free?)") from None


def write_port(record, port, force=False, soft_reset=False, baudrate=115200,
               timeout=DEFAULT_PORT_TIMEOUT, waiting=None):
    """Write the record to the board on serial `port`: mpremote's raw REPL runs
    devscripts/factory_write.py, which formats and writes the board's `fctry` partition
    and reads the files back; their SHA-256 must match. The secrets travel only over the
    serial line, never through a file or a command line. Every wait is bounded: no REPL
    within `timeout` s, or silence of `timeout` s in an exchange, raises Unreachable.
    `waiting(text)` is told what is being waited for."""
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    from .provision import FACTORY_FILES, PARTITION  # the record's layout is provision's

    cfg = flashimage.board_config(record.board)
    opts = {"partition": PARTITION, "platform": _platform(record.board), "force": bool(force),
            "mounted": cfg.get("factory_mount", "/factory"), "lfs": cfg["littlefs"]}
    if waiting:
        waiting(f"waiting for the MicroPython REPL on {port} (up to {timeout:g} s)")
    try:
        # The read time-out bounds every single read; mpremote's own waits are bounded too.
        transport = SerialTransport(port, baudrate=baudrate, timeout=min(timeout, 2.0))
    except TransportError as e:
        raise Unreachable(f"cannot open {port}: {e}") from None
    try:
        _enter_repl(transport, port, soft_reset, timeout)
        transport.exec(DEVSCRIPT.read_bytes())
        _call(transport, f"begin(json.loads({json.dumps(opts)!r}))")
        for name in FACTORY_FILES:
            b64 = base64.b64encode(record.files[name]).decode()
            _call(transport, f"put({name!r}, {b64!r})")
        answer = _call(transport, "finish()")
        transport.exit_raw_repl()
    except TransportError as e:
        raise Unreachable(f"serial exchange with {port} failed: {e}") from None
    finally:
        transport.close()
    want = {n: hashlib.sha256(d).hexdigest() for n, d in record.files.items()}
    if answer.get("files") != want:
        raise DeviceError(f"the board's factory record does not read back as written "
                          f"(got {sorted(answer.get('files', {}))})")
    record.target = f"port:{port}"
    return answer


def _call(transport, code):
    from mpremote.transport import TransportExecError

    try:
        out = transport.exec(code)
    except TransportExecError as e:
        raise DeviceError(f"device script failed: {e.error_output.strip()[-400:]}") from None
    try:
        answer = json.loads(out.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise DeviceError(f"unexpected answer from the board: {out[-200:]!r}") from None
    if not answer.get("ok"):
        raise DeviceError(f"{answer.get('code')}: {answer.get('detail', '')}")
    return answer


@contextlib.contextmanager
def serial_sim(d, board="unix"):
    """The simulated board in `d` on a serial line, as if it were a board on USB: the
    `micropython` REPL on one end of a pseudo-terminal pair; yields the other end's path
    (/dev/pts/N) for mpremote. The board works on `d`/flash.bin (created blank if missing)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    image = d / flashimage.image_name(board)
    if not image.exists():
        flashimage.create_blank(image, board=board)
    master, slave = os.openpty()
    env = dict(os.environ, MICROPYPATH=mpy.device_path(board))
    try:
        proc = subprocess.Popen([mpy.micropython_path()], stdin=master, stdout=master,
                                stderr=master, cwd=str(d), env=env, close_fds=True,
                                start_new_session=True)
    finally:
        os.close(master)
    try:
        # The slave stays open here for the board's lifetime, like a terminal attached;
        # mpremote opens it again by name.
        yield os.ttyname(slave)
    finally:
        proc.kill()
        proc.wait()
        os.close(slave)
