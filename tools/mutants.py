"""`make mutants`: put known boot-stage and installer bugs back, one at a time, into a scratch
copy of the repository, and run the tests that must catch each (mutation testing, as a
catalog: docs/robustness.md lists the same classes).

    python tools/mutants.py [-o build/mutants.json] [--only ID ...]

A mutant is killed when its tests fail on the patched copy. Before any mutant runs, the same
tests must pass on the unpatched copy: otherwise nothing would be proved. Exit status 1 if a
mutant survives.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
T = "tests/host/test_powerloss.py::test_issue21_finding"
SAMPLE = "tests/host/test_powerloss.py::test_powercut_sweep_sample"
FW = "tests/host/test_fwupdate.py"

# (id, file, what the bug is, exact text, replacement, tests that must fail)
CATALOG = [
    ("trial-not-persisted", "bootloader/bootstage.py",
     "the trial counter is not persisted before the trial runs (a release that crashes on "
     "every boot is never rolled back)",
     "                if self._save(st):\n                    try:\n"
     "                        self.verified = bring(pending, st)",
     "                if True:\n                    try:\n"
     "                        self.verified = bring(pending, st)",
     [f"{T}[crash_loop]"]),
    ("key-floor-not-raised", "bootloader/bootstage.py",
     "the key floor is not raised at confirm (a revoked key's bundles install again)",
     '        st["key_floor"] = max(st["key_floor"], self.verified.cert.serial)\n'
     '        st["last"]',
     '        st["last"]',
     [f"{T}[key_floor]"]),
    ("sec-floor-not-raised", "bootloader/bootstage.py",
     "the security floor is not raised at confirm (downgrades install)",
     '        st["sec_floor"] = max(st["sec_floor"], '
     'self.verified.manifest["security_version"])\n',
     "",
     [f"{T}[state_lost]"]),
    ("only-code-hashed", "bootloader/romslots.py",
     "only the start of a slot's ROMFS image is hashed at boot (a tampered data file runs)",
     "    if window is not None:\n"
     "        digest = hashlib.sha256(window(off + n)[off:off + n]).digest()\n"
     "    else:\n"
     "        digest = _hash(part, off, n, buf).digest()\n",
     "    digest = _hash(part, off, min(n, 4096), buf).digest()\n"
     "    digest = entry[\"digest\"]\n",
     [f"{T}[all_files_hashed]"]),
    ("pending-not-verified", "bootloader/bootstage.py",
     "a pending slot that fails verification runs its trial all the same",
     '                        self._rollback(st, "slot %s failed verification before its '
     'trial: %s"\n                                       % (pending, e))\n',
     "                        self.slot, self.trial = pending, True\n"
     "                        return True\n",
     [f"{T}[all_files_hashed]"]),
    ("rollback-keeps-slot", "bootloader/bootstage.py",
     "a rolled-back slot keeps its signed prefix (a later fallback boots a failed release)",
     "        romslots.invalidate(p)\n",
     "        pass\n",
     [f"{T}[crash_loop]"]),
    ("fallback-ignores-floor", "bootloader/bootstage.py",
     "a fallback slot is verified without the security floor (a damaged release falls back "
     "to an older, vulnerable one)",
     "            v = romslots.verify(part, self.anchors, self.policy(st), self.buf, "
     "self.space(),",
     "            pol = self.policy(st)\n            if slot != st[\"active\"]:\n"
     "                pol[\"sec_floor\"] = 0\n"
     "            v = romslots.verify(part, self.anchors, pol, self.buf, self.space(),",
     [f"{T}[fallback_floor]"]),
    ("save-raises", "bootloader/bootstage.py",
     "a state-record save that fails crashes the boot stage (no decision)",
     "        except OSError as e:\n            why = \"state record cannot be written",
     "        except ImportError as e:\n            why = \"state record cannot be written",
     [f"{T}[save_fails]"]),
    ("recover-defaults", "bootloader/bootstage.py",
     "a lost state record falls back to the factory floors (security floor 0)",
     "        bring = self._bring if self.regions else self._verify\n"
     "        if st.get(\"lost\"):\n            st = self.recover(st)\n",
     "        bring = self._bring if self.regions else self._verify\n",
     [f"{T}[state_lost]"]),
    ("record-one-copy", "bootloader/records.py",
     "the state and owner records are written to one copy only",
     "    for p in paths(path):\n        makedirs(",
     "    for p in paths(path)[:1]:\n        makedirs(",
     [f"{T}[records]"]),
    ("record-oldest-wins", "bootloader/records.py",
     "the older of the two copies wins (a cut between the writes loses the newer record)",
     "        elif best is None or got[0] > best[0]:",
     "        elif best is None or got[0] < best[0]:",
     [f"{T}[records]"]),
    ("record-crc-ignored", "bootloader/records.py",
     "the CRC of a copy is not checked (a flipped bit is taken as the record)",
     "        if crc.strip() == _crc(line):",
     "        if True:",
     [f"{T}[records]"]),
    ("mount-failure-crash", "boards/unix/servicejig.py",
     "a partition that cannot be mounted crashes the board before the boot stage runs",
     "        except OSError as e:\n            problems.append(\"%s cannot be mounted",
     "        except ImportError as e:\n            problems.append(\"%s cannot be mounted",
     [f"{T}[bit_flips]"]),
    ("lost-password-silent", "firmware/credentials.py",
     "an unreadable owner password record silently brings back the label password",
     '        if status == store.LOST:\n            raise CredentialError("RECORD_LOST")',
     '        if False:\n            raise CredentialError("RECORD_LOST")',
     [f"{T}[bit_flips]"]),
    ("owner-mark-ignored", "firmware/credentials.py",
     "a record littlefs rolled back (both copies gone) brings back the label password although "
     "the owner mark outside littlefs says an owner password is in force",
     "            if mark == 1:  # both copies gone (a littlefs rollback): still lost\n",
     "            if False:\n",
     ["tests/host/test_marks.py::test_lost_owner_record_is_never_the_label_password"]),
    ("marks-threshold-any-zero", "bootloader/marks.py",
     "an entry counts as set when any of its bits is 0 (one flipped bit at rest changes the "
     "owner mark)",
     "                on = z > _HALF\n",
     "                on = z > 0\n",
     ["tests/host/test_marks.py::test_marks_survive_cuts_flips_and_carry_overs"]),
    ("fw-key-floor-not-shared", "bootloader/fwupdate.py",
     "confirming a firmware image signed by a rotated key does not revoke the old key",
     '        full["key_floor"] = max(full["key_floor"], v.cert.serial)\n',
     "",
     [f"{FW}::test_install_confirm_rollback_refuse_and_tamper"]),
    ("fw-writer-no-erase", "bootloader/fwupdate.py",
     "the firmware writer programs the image's last partial sector without erasing it",
     "            self.part.ioctl(6, self._block)\n",
     "",
     [f"{FW}::test_install_confirm_rollback_refuse_and_tamper"]),
]
# Not counted, equivalent on this design (no test can fail): writing the state record in place
# instead of temp-then-rename (littlefs commits a file at close); confirm leaving the slot
# pending (the record is then invalid, pending == active, and the boot stage rebuilds it from
# the highest verified version: the same state a correct confirm writes).

_COPY = ("bootloader", "boards", "firmware", "host_tools", "tests", "tools", "conformance",
         "pyproject.toml", "README.md", "SECURITY.md", "docs")


def scratch(dest):
    for name in _COPY:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", ".pytest_cache"))
        elif src.exists():
            shutil.copy2(src, dest / name)


def run_tests(root, tests, timeout=900):
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           "--rootdir", str(root), *tests]
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timed out (a hang counts as caught)"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    why = [x.strip() for x in lines if x.startswith("E ") and "Error" in x][:1]
    return proc.returncode == 0, " / ".join((lines[-1:] or [""]) + why)[:300]


def apply(root, file, old, new):
    p = root / file
    text = p.read_text()
    if text.count(old) != 1:
        raise RuntimeError(f"mutant text not found exactly once in {file}: {old!r}")
    p.write_text(text.replace(old, new))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", default="build/mutants.json")
    ap.add_argument("--only", action="append")
    args = ap.parse_args()
    catalog = [m for m in CATALOG if not args.only or m[0] in args.only]
    t0 = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        base = Path(tmp) / "base"
        scratch(base)
        tests = sorted({t for m in catalog for t in m[5]})
        ok, tail = run_tests(base, tests)
        if not ok:
            print(f"the catalog's tests fail without any mutant: {tail}")
            return 2
        for mid, file, what, old, new, mtests in catalog:
            root = Path(tmp) / mid
            shutil.copytree(base, root)
            apply(root, file, old, new)
            passed, tail = run_tests(root, mtests)
            results.append({"id": mid, "file": file, "bug": what, "tests": mtests,
                            "killed": not passed, "result": tail})
            print(f"{'killed ' if not passed else 'SURVIVED'} {mid}: {tail}", flush=True)
            shutil.rmtree(root)
    killed = sum(r["killed"] for r in results)
    summary = {"mutants_killed": killed, "mutants_total": len(results),
               "seconds": round(time.monotonic() - t0, 1), "mutants": results}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"mutants: {killed}/{len(results)} killed -> {out}")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
