"""The system components tests use (installed by tools/bootstrap, which `make test` runs first).
A missing one is a test failure that names the install command, never a skip."""

import os
import shutil

import pytest


def need(tool, package):
    """The path of `tool` (a name on PATH or an absolute path); fails the test when missing."""
    path = tool if os.path.isabs(tool) else shutil.which(tool)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"{tool} is missing: run `sh tools/bootstrap` (what `make test` does first) "
                    f"or apt-get install {package}", pytrace=False)
    return path
