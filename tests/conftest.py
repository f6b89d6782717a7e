"""Shared pytest fixtures: the MicroPython runner and the repository paths."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host_tools import mpy  # noqa: E402


@pytest.fixture
def run_mpy():
    """Run a MicroPython script under the unix port with the board path; returns
    CompletedProcess."""
    return mpy.run


def pytest_sessionfinish(session, exitstatus):
    """Whatever failed, leave no simulated device of this session running: each test's fixture
    stops its own; this catches the ones a failure left behind, by their recorded PIDs only
    (a developer's own simulated devices, or another checkout's, are not touched)."""
    from host_tools import sim

    sim.stop_started()


def pytest_sessionstart(session):
    """Record the commit under test in the JUnit XML (`--junitxml`), so that `iotctl report`
    names the commit its evidence belongs to, not the one checked out when it runs."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # another pytest: the report falls back to the checkout's commit
        return
    xml = session.config.stash.get(xml_key, None)
    if xml is not None:  # the controller that writes the file (also under pytest-xdist)
        from host_tools.report.provenance import git_commit

        found = git_commit()
        xml.add_global_property("git_commit", found["commit"] or "")
        xml.add_global_property("git_dirty", {True: "true", False: "false"}.get(found["dirty"],
                                                                                ""))
