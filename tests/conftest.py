"""Shared pytest fixtures: the MicroPython runner and the repository paths."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host_tools import mpy  # noqa: E402


@pytest.fixture
def run_mpy():
    """Run a MicroPython script under the unix port with the board path; returns CompletedProcess."""
    return mpy.run
