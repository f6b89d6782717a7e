"""`fuzz_inputs_per_run`: the generated inputs of one `make fuzz` (the fuzz tests with every
count times FUZZ_SCALE), counted from the report the tests append to (FUZZ_REPORT).
`python -m bench.fuzz REPORT` prints the count of a finished run."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = ("tests/e2e/test_fuzz.py", "tests/e2e/test_mqtt_fuzz.py", "tests/e2e/test_byte_fuzz.py")
SCALE = 5


def count(report):
    per = {}
    for line in Path(report).read_text().splitlines():
        doc = json.loads(line)
        per[doc["fuzzer"]] = per.get(doc["fuzzer"], 0) + doc["inputs"]
    return per


def run():
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        report = Path(tmp) / "fuzz.jsonl"
        env = dict(os.environ, FUZZ_SCALE=str(SCALE), FUZZ_REPORT=str(report))
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-q", *TESTS],
                              cwd=REPO, env=env, capture_output=True, text=True)
        elapsed = time.monotonic() - t0
        if proc.returncode:
            raise RuntimeError("the fuzz run failed:\n" + proc.stdout[-4000:])
        per = count(report)
    return {"fuzz_inputs_per_run": sum(per.values()), "fuzz_run_s": round(elapsed, 1),
            "fuzz_scale": SCALE}


if __name__ == "__main__":
    per = count(sys.argv[1])
    print(f"fuzz: {sum(per.values())} generated inputs in this run: {per}")
