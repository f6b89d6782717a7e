"""Run the boot stage's signature verifiers, under the MicroPython unix port, over vector files in
Wycheproof's JSON layout: testGroups[] with publicKey.pk (Ed25519) or publicKey.uncompressed
(P-256), and tests[] with tcId, msg, sig (hex) and result valid / invalid / acceptable."""

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import mpy
from .errors import ToolError, UsageError

RUNNER = Path(__file__).parent / "devscripts" / "vectors_runner.py"
ALGS = {"ed25519": "pk", "ecdsa-p256": "uncompressed"}  # algorithm -> publicKey field
RESULTS = ("valid", "invalid", "acceptable")


@dataclass
class Failure:
    tc_id: object
    expected: str
    got: str  # "accepted", "rejected" or "raised"
    comment: str = ""


@dataclass
class Result:
    passed: int
    failed: int
    failures: list = field(default_factory=list)

    @property
    def total(self):
        return self.passed + self.failed

    @property
    def ok(self):
        """True when every test passed and there was at least one."""
        return self.failed == 0 and self.passed > 0


def format_summary(result):
    """The one-line summary `N passed, M failed`."""
    return f"{result.passed} passed, {result.failed} failed"


def _unhex(value):
    """bytes from a hex string, or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def load_cases(alg, path):
    """[(tcId, key or None, msg or None, sig or None, expected, comment)] from a vector file.
    A None key, msg or sig is unparseable hex: such a test counts as rejected."""
    if alg not in ALGS:
        raise UsageError(f"unknown algorithm {alg!r} (expected one of {', '.join(ALGS)})")
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UsageError(f"{path} is not JSON: {e}") from None
    groups = doc.get("testGroups") if isinstance(doc, dict) else None
    if not isinstance(groups, list):
        raise UsageError(f"{path} has no testGroups list")
    cases = []
    for gi, group in enumerate(groups):
        if not isinstance(group, dict) or not isinstance(group.get("tests"), list):
            raise UsageError(f"{path}: testGroups[{gi}] has no tests list")
        pub = group.get("publicKey", group.get("key"))  # "key" in Wycheproof's older files
        key = _unhex(pub.get(ALGS[alg])) if isinstance(pub, dict) else None
        for test in group["tests"]:
            if not isinstance(test, dict) or test.get("result") not in RESULTS:
                raise UsageError(f"{path}: testGroups[{gi}] has a test without a valid result")
            cases.append((test.get("tcId"), key, _unhex(test.get("msg")), _unhex(test.get("sig")),
                          test["result"], str(test.get("comment", ""))))
    return cases


def _script(cases):
    """The runner's stdin for the cases it must run (those whose fields all parsed)."""
    lines = []
    key = None
    for _, k, msg, sig, _, _ in cases:
        if k is None or msg is None or sig is None:
            continue
        if k != key:
            lines.append("K " + (k.hex() or "-"))
            key = k
        lines.append(f"T {msg.hex() or '-'} {sig.hex() or '-'}")
    return "\n".join(lines) + "\n"


def _verdicts(proc, expected_count):
    out = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not out or out[-1] != f"END {expected_count}":
        detail = (proc.stderr or proc.stdout).strip()[-800:]
        raise ToolError(f"vector runner failed (exit {proc.returncode}): {detail}")
    verdicts = "".join(out[:-1])
    if len(verdicts) != expected_count or set(verdicts) - set("01E"):
        raise ToolError(f"vector runner printed {len(verdicts)} verdicts for "
                        f"{expected_count} tests")
    return verdicts


def run_vectors(alg, path, heapsize=None, timeout=None):
    """Run the device verifier for `alg` ("ed25519" or "ecdsa-p256") over the vector file at
    `path` in one micropython process and compare with each test's expected result. Tests whose
    key, msg or sig is not hex count as rejected by the verifier; "acceptable" passes either way.
    Raises UsageError for a missing or malformed file, ToolError if micropython fails."""
    cases = load_cases(alg, path)
    runnable = [c for c in cases if None not in c[1:4]]
    timeout = timeout or 60 + 0.2 * len(runnable)
    try:
        proc = mpy.run(RUNNER, [alg], heapsize=heapsize, input=_script(cases), timeout=timeout)
    except OSError as e:
        raise ToolError(f"cannot run micropython: {e}") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"vector runner timed out after {timeout:.0f} s") from None
    verdicts = iter(_verdicts(proc, len(runnable)))
    passed = 0
    failures = []
    for tc_id, key, msg, sig, expected, comment in cases:
        got = next(verdicts) if None not in (key, msg, sig) else "0"
        got = {"1": "accepted", "0": "rejected", "E": "raised"}[got]
        if (expected == "acceptable" and got != "raised") or \
                (expected == "valid" and got == "accepted") or \
                (expected == "invalid" and got == "rejected"):
            passed += 1
        else:
            failures.append(Failure(tc_id, expected, got, comment))
    return Result(passed, len(failures), failures)
