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


def pytest_sessionfinish(session, exitstatus):
    """Whatever failed, leave no simulated device of this session running: each test's fixture
    stops its own; this catches the ones a failure left behind, by their recorded PIDs only
    (a developer's own simulated devices, or another checkout's, are not touched)."""
    from host_tools import sim

    sim.stop_started()
