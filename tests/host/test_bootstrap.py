"""tools/bootstrap, the set-up step of `make demo|test|bench|report` and CI: it finds what is
missing, installs it with apt-get when it may, and otherwise stops with the exact command.
The machine is simulated: BOOTSTRAP_ROOT stands for the root of the file system it checks,
and PATH holds only the tools the case allows (a fake apt-get that records its calls and
"installs" by creating the checked files, a fake `id` for a user who is not root)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "bootstrap"
PACKAGES = ["mosquitto", "chromium", "libnss3-tools", "postgresql", "testssl.sh", "nginx"]
FILES = {"mosquitto": ["usr/sbin/mosquitto"], "chromium": ["usr/bin/chromium"],
         "libnss3-tools": ["usr/bin/certutil"],
         "postgresql": ["usr/lib/postgresql/15/bin/initdb", "usr/sbin/runuser"],
         "testssl.sh": ["usr/bin/testssl"], "nginx": ["usr/sbin/nginx"]}

FAKE_APT = """#!/bin/sh
echo "$*" >> "$APT_CALLS"
[ "$1" = install ] || exit 0
for pkg in "$@"; do
    case "$pkg" in
        mosquitto) f=usr/sbin/mosquitto ;;
        chromium) f=usr/bin/chromium ;;
        libnss3-tools) f=usr/bin/certutil ;;
        postgresql) f="usr/lib/postgresql/15/bin/initdb usr/sbin/runuser" ;;
        testssl.sh) f=usr/bin/testssl ;;
        nginx) f=usr/sbin/nginx ;;
        *) continue ;;
    esac
    for one in $f; do
        mkdir -p "$(dirname "$BOOTSTRAP_ROOT/$one")"
        [ -n "$APT_BROKEN" ] || { : > "$BOOTSTRAP_ROOT/$one"; chmod +x "$BOOTSTRAP_ROOT/$one"; }
    done
done
"""


def _machine(tmp_path, have=(), apt=True, uid=0, sudo=False):
    """A simulated machine: (env, root, calls file)."""
    root, bin_ = tmp_path / "root", tmp_path / "bin"
    root.mkdir()
    bin_.mkdir()
    for tool in ("sed", "env", "tail", "rm", "mkdir", "dirname", "chmod", "true"):
        os.symlink(shutil.which(tool), bin_ / tool)
    (bin_ / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    if apt:
        (bin_ / "apt-get").write_text(FAKE_APT)
    if sudo:  # passwordless sudo: runs the command as given
        (bin_ / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
    for tool in ("id", "apt-get", "sudo"):
        if (bin_ / tool).exists():
            (bin_ / tool).chmod(0o755)
    for pkg in have:
        for one in FILES[pkg]:
            (root / one).parent.mkdir(parents=True, exist_ok=True)
            (root / one).touch(mode=0o755)
    calls = tmp_path / "apt-calls"
    env = {"PATH": str(bin_), "BOOTSTRAP_ROOT": str(root), "PYTHON": sys.executable,
           "APT_CALLS": str(calls), "TMPDIR": str(tmp_path)}
    return env, root, calls


def _run(env, *args):
    return subprocess.run(["/bin/sh", str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_refuses_without_apt_get_and_names_the_command(tmp_path):
    env, root, calls = _machine(tmp_path, apt=False)
    proc = _run(env)
    assert proc.returncode != 0 and proc.stdout == ""
    want = "apt-get install -y --no-install-recommends " + " ".join(PACKAGES)
    assert f"sudo apt-get update && sudo {want}" in proc.stderr, proc.stderr
    for pkg in PACKAGES:  # each missing thing is named with what it is for
        assert f"  {pkg}: " in proc.stderr
    assert not calls.exists() and not any(root.iterdir())


def test_refuses_when_not_root_and_no_passwordless_sudo(tmp_path):
    env, _, calls = _machine(tmp_path, have=["chromium", "libnss3-tools", "postgresql"],
                             uid=1000)
    proc = _run(env)
    assert proc.returncode != 0
    assert "not root and no passwordless sudo" in proc.stderr
    assert ("sudo apt-get install -y --no-install-recommends mosquitto testssl.sh nginx"
            in proc.stderr), proc.stderr
    assert not calls.exists()  # apt-get was never run


@pytest.mark.parametrize("uid,sudo", [(0, False), (1000, True)])
def test_installs_what_is_missing_one_line_each(tmp_path, uid, sudo):
    env, root, calls = _machine(tmp_path, have=["libnss3-tools"], uid=uid, sudo=sudo)
    proc = _run(env)
    assert proc.returncode == 0, proc.stderr
    missing = [p for p in PACKAGES if p != "libnss3-tools"]
    assert [line.rsplit(": ", 1)[0] for line in proc.stdout.splitlines()] == \
        [f"bootstrap: installing {p}" for p in missing]
    assert calls.read_text().splitlines() == [
        "update -qq", "install -y -qq --no-install-recommends " + " ".join(missing)]
    assert all((root / f).exists() for p in PACKAGES for f in FILES[p])
    # Run again: everything is there, so it says nothing and calls nothing.
    calls.unlink()
    again = _run(env)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert not calls.exists()


def test_help_and_check_install_nothing(tmp_path):
    env, root, calls = _machine(tmp_path, have=["chromium"])
    proc = _run(env, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: tools/bootstrap")
    proc = _run(env, "--check")
    assert proc.returncode == 1 and "  mosquitto: " in proc.stderr
    assert "apt-get install -y --no-install-recommends mosquitto libnss3-tools" in proc.stderr
    proc = _run(env, "--install-everything")
    assert proc.returncode == 2 and "unknown argument" in proc.stderr
    assert not calls.exists() and not (root / "usr/sbin/mosquitto").exists()


def test_reports_a_package_that_installs_but_is_not_usable(tmp_path):
    env, _, _ = _machine(tmp_path, have=[p for p in PACKAGES if p != "chromium"])
    proc = _run({**env, "APT_BROKEN": "1"})
    assert proc.returncode != 0
    assert "chromium was installed but is still not usable" in proc.stderr


def test_an_old_python_is_refused(tmp_path):
    old = tmp_path / "python3"
    old.write_text("#!/bin/sh\nexit 1\n")  # answers `sys.version_info < (3, 11)` with "yes"
    old.chmod(0o755)
    env, _, _ = _machine(tmp_path, have=PACKAGES, apt=False)
    proc = _run({**env, "PYTHON": str(old)})
    assert proc.returncode != 0
    assert "python3: the host tools and tests (Python 3.11 or newer)" in proc.stderr


def test_this_machine_has_everything():
    """What `make test` just ran: here nothing is missing, so it prints nothing."""
    proc = subprocess.run(["/bin/sh", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON": sys.executable})
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
