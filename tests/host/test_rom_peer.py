"""`iotctl flash` and `iotctl provision --port` against a real ROM-protocol peer: PyPI's
esp32-mock-bootloader serves the ESP32 ROM bootloader's SLIP protocol on a pseudo-terminal,
and esptool (and our ROM-mode probe) talk to it as to a board held in download mode."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools.ledger import Ledger
from tests.fakes.appimage import make_app_image, make_bootloader_image

BIN = Path(sys.executable).parent


@pytest.fixture
def rom_board(tmp_path):
    """A pseudo-terminal with the mock ESP32 ROM bootloader on its other end."""
    port_file = tmp_path / "mock.port"
    env = dict(os.environ, TMPDIR=str(tmp_path))  # its registry and log stay in tmp_path
    proc = subprocess.Popen([str(BIN / "esp32-mock-bootloader"), "run", "--pty", "--chip",
                             "esp32", "--port-file", str(port_file), "--timeout", "300"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None and time.monotonic() < deadline, "the mock did not start"
            time.sleep(0.05)
        yield port_file.read_text().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def iotctl(*args, timeout=120):
    return subprocess.run([str(BIN / "iotctl"), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def test_flash_refuses_what_sign_refuses_and_writes_what_it_checked(rom_board, tmp_path):
    fake = tmp_path / "fake.bin"
    fake.write_bytes(b"\x77" + os.urandom(199_999))  # random, but never the 0xE9 magic
    app = tmp_path / "micropython.bin"
    app.write_bytes(make_app_image("esp32", "1.24.1", 60_000))
    boot = tmp_path / "bootloader.bin"
    boot.write_bytes(make_bootloader_image("esp32"))
    other = tmp_path / "s3.bin"
    other.write_bytes(make_app_image("esp32s3", "1.24.1", 20_000))
    # random bytes: refused as `iotctl sign` refuses them, before esptool is started
    for firmware, why in ((fake, "not an ESP app image"), (other, "built for ESP32-S3")):
        proc = iotctl("flash", "--board", "esp32", "--port", rom_board, "--firmware", firmware,
                      "--bootloader", boot)
        assert proc.returncode == 2 and why in proc.stderr, proc.stdout + proc.stderr
        assert "Connecting" not in proc.stdout  # esptool never ran
        sign = iotctl("sign", firmware, "--kind", "firmware", "--keys", tmp_path / "k",
                      "--board", "esp32", "--version", "1.0.0", "--security-version", "1",
                      "-o", tmp_path / "s.bnd")
        assert sign.returncode == 2 and why in sign.stderr, sign.stderr
    small = tmp_path / "small.bin"
    small.write_bytes(fake.read_bytes()[:8192])
    proc = iotctl("flash", "--board", "esp32", "--port", rom_board, "--firmware", app,
                  "--bootloader", small)
    assert proc.returncode == 2 and "bootloader is not an ESP image" in proc.stderr
    proc = iotctl("flash", "--board", "esp32", "--port", rom_board, "--firmware", app,
                  "--bootloader", app)
    assert proc.returncode == 2 and "must fit 28672 bytes" in proc.stderr
    proc = iotctl("flash", "--board", "esp32", "--firmware", app, "--merge", "-o",
                  tmp_path / "m.bin")
    assert proc.returncode == 2 and "needs --bootloader" in proc.stderr
    assert not (tmp_path / "m.bin").exists()
    # a checked image is written through the ROM protocol with the options given
    proc = iotctl("flash", "--board", "esp32", "--port", rom_board, "--firmware", app,
                  "--bootloader", boot, "--baud", "115200", "--before", "default-reset",
                  "--after", "no-reset")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Hash of data verified." in proc.stdout
    assert f"flashed esp32 on {rom_board}: micropython 1.24.1 in ota_0" in proc.stdout
    # read ota_0 and the bootloader back from the peer's flash
    for offset, src in ((0x20000, app), (0x1000, boot)):
        back = tmp_path / f"back-{offset:x}.bin"
        size = src.stat().st_size
        subprocess.run([sys.executable, "-m", "esptool", "--chip", "esp32", "--port", rom_board,
                        "--before", "default-reset", "--after", "no-reset", "read-flash",
                        hex(offset), str(size), str(back)], check=True, capture_output=True,
                       timeout=120)
        assert back.read_bytes() == src.read_bytes()
    # without --bootloader: a warning says what that means
    proc = iotctl("flash", "--board", "esp32", "--port", rom_board, "--firmware", app,
                  "--after", "no-reset", "--json")
    assert proc.returncode == 0 and "warning: no --bootloader" in proc.stderr


def test_provision_port_in_rom_download_mode_is_bounded_and_leaves_nothing(rom_board, factory,
                                                                            tmp_path):
    labels = tmp_path / "labels"
    started = time.monotonic()
    proc = iotctl("provision", "--keys", factory, "--board", "esp32", "--port", rom_board,
                  "--labels", labels, "--timeout", "2", "--json")
    took = time.monotonic() - started
    assert proc.returncode == 9, proc.stdout + proc.stderr
    import json
    err = json.loads(proc.stdout)["error"]
    assert err["code"] == 9 and err["name"] == "unreachable"
    assert "ROM download mode" in err["message"] and rom_board in err["message"]
    assert f"waiting for the MicroPython REPL on {rom_board} (up to 2 s)" in proc.stderr
    assert took < 15, took
    assert not labels.exists() or not list(labels.iterdir())
    with Ledger.open(factory / "ledger.sqlite") as lg:
        assert lg.rows() == []


def test_provision_port_sigterm_removes_the_label_and_the_ledger_row(factory, tmp_path):
    """SIGTERM while waiting for a silent board: the label (it holds the password) is removed
    and the ledger row rolled back, so no label exists for a device not in the ledger."""
    master, slave = os.openpty()  # a port where nothing ever answers
    labels = tmp_path / "labels"
    try:
        proc = subprocess.Popen([str(BIN / "iotctl"), "provision", "--keys", str(factory),
                                 "--board", "esp32", "--port", os.ttyname(slave), "--labels",
                                 str(labels), "--timeout", "60"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not (labels.exists() and len(list(labels.iterdir())) == 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 143, out + err
    assert "terminated" in err
    assert list(labels.iterdir()) == []
    with Ledger.open(factory / "ledger.sqlite") as lg:
        assert lg.rows() == []
