"""Power loss, bit rot and the mutation catalog: the figures of `make powercut` and `make mutants`.

  powercut_states  power-cut states swept (each: one cut flash operation in one tear shape,
                   about one in twenty cut again during the recovery, then one more update)
  powercut_bad     of those, states with a bad outcome (crash, loop, unapproved version,
                   alert-only with a valid slot, a floor lowered, not updatable): must be 0
  biterr_states    bit flips at rest swept (one bit in every used block, twice)
  biterr_bad       of those, bad outcomes (as above, or an owner record lost in silence)
  mutants_killed / mutants_total   boot-stage and installer bug classes caught by the tests

The results of the last `make powercut` / `make mutants` (build/*.json) are used when they are
newer than every file of bootloader/, boards/unix/ and firmware/; otherwise the full sweep and
the catalog run here (about 10 and 8 minutes on 2 cores)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"


def _fresh(path):
    if not path.is_file():
        return False
    t = path.stat().st_mtime
    for d in ("bootloader", "boards/unix", "firmware", "tests/device", "tools"):
        for f in (REPO / d).rglob("*"):
            if f.is_file() and f.suffix in (".py", ".json", ".txt") and f.stat().st_mtime > t:
                return False
    return True


def _result(name, script):
    path = BUILD / f"{name}.json"
    if not _fresh(path):
        subprocess.run([sys.executable, str(REPO / "tools" / script), "-o", str(path)],
                       cwd=REPO, check=False)
    return json.loads(path.read_text())


def run():
    pc = _result("powercut", "powercut.py")
    mu = _result("mutants", "mutants.py")
    return {"powercut_states": pc["powercut_states"], "powercut_bad": pc["powercut_bad"],
            "biterr_states": pc["biterr_states"], "biterr_bad": pc["biterr_bad"],
            "mutants_killed": mu["mutants_killed"], "mutants_total": mu["mutants_total"]}
