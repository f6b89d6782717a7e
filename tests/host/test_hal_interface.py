"""The declared HAL interface (bootloader/halspec.py): the unix board's HAL and each ESP32
board's HAL implement all of it (tests/device/hal_interface.py), and no caller probes a HAL
with getattr/hasattr any more."""

import re

import pytest

from host_tools import flashimage, mpy

REPO = mpy.REPO
FAKES = REPO / "tests" / "fakes"
SCRIPT = REPO / "tests" / "device" / "hal_interface.py"


@pytest.mark.parametrize("board", ("esp32", "esp32s3", "esp32c3"))
def test_esp32_hal_implements_the_interface(board):
    proc = mpy.run(SCRIPT, [board, REPO / "boards" / board / "board.json"],
                   extra_path=[FAKES, REPO / "boards" / board, REPO / "boards" / "common"])
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1:] == ["OK"], \
        proc.stdout[-2000:] + proc.stderr


def test_unix_hal_implements_the_interface(tmp_path):
    flashimage.create_blank(tmp_path / flashimage.image_name())
    proc = mpy.run(SCRIPT, ["unix", tmp_path])
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1:] == ["OK"], \
        proc.stdout[-2000:] + proc.stderr


def test_no_caller_probes_the_hal():
    probe = re.compile(r"(getattr|hasattr)\([^)]*\bhal\b")
    found = [f"{p.relative_to(REPO)}:{n}" for d in ("firmware", "bootloader", "boards")
             for p in sorted((REPO / d).rglob("*.py")) if p.name != "halspec.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if probe.search(line)]
    assert found == []
