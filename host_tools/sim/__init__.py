"""Simulated devices: create one from keys and a bundle, run it as a `micropython` process,
reboot it, cut its power, install bundles through its own installer, read its status."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from .. import flashimage, keys, mpy
from ..errors import DeviceError, UsageError, VerifyError

BOARD = "unix"
BOARD_DIR = mpy.REPO / "boards" / BOARD
IMAGE = "flash.bin"
RUN = "run"
RESET_EXIT = 75
PRODUCT = "iot-thermostat"
MODEL = "TH-1"


def image_path(d):
    return Path(d) / IMAGE


def run_dir(d):
    return Path(d) / RUN


def _tool(d, *args, timeout=120):
    """Run the device's offline tool (boards/unix/servicejig.py) against the sim's flash image."""
    proc = mpy.run(BOARD_DIR / "servicejig.py", [str(Path(d).resolve()), *args], timeout=timeout)
    out = proc.stdout.strip().splitlines()
    try:
        return json.loads(out[-1])
    except (IndexError, ValueError):
        raise DeviceError(f"device tool failed (exit {proc.returncode}): "
                          f"{(proc.stderr or proc.stdout).strip()[-800:]}") from None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sim_config(d):
    try:
        return json.loads((Path(d) / "sim.json").read_text())
    except (OSError, ValueError):
        return {}


def https_address(d):
    """HOST:PORT of the simulated device's local TLS API."""
    return f"127.0.0.1:{sim_config(d).get('https_port', 8443)}"


def create(d, keys_dir, bundle_path, device_id=None, key_floor=1, https_port=None,
           iterations=None, labels=None, heapsize=None, heap_sample_ms=0, speed=None,
           free_heap_kib=None, cloud=None):
    """A new simulated device in `d`: blank flash, factory data, and the bundle installed and
    confirmed in slot A by the device's own installer. When `keys_dir` holds a manufacturer
    CA, the device is provisioned as on the factory line (own id, password, key and
    certificate; the result holds the password for the label); otherwise it gets only trust
    anchors and an identity, and no local API. `cloud` ({"host", "port", ...}) names the
    broker in the factory identity (docs/cloud-link.md)."""
    d = Path(d)
    if image_path(d).exists():
        raise UsageError(f"{d} already holds a simulated device")
    bundle_path = Path(bundle_path)
    if not bundle_path.is_file():
        raise UsageError(f"bundle {bundle_path} not found")
    d.mkdir(parents=True, exist_ok=True)
    cfg = {"https_port": https_port or _free_port()}
    if heapsize:  # run the device with a board-sized heap (micropython -X heapsize=...)
        cfg["heapsize"] = heapsize
    if heap_sample_ms:  # benchmarks: record the peak live heap in run/heap.json
        cfg["heap_sample_ms"] = heap_sample_ms
    if speed:  # the simulated room runs this many times faster than real time
        cfg["speed"] = speed
    if free_heap_kib:  # benchmarks: boot stage and HAL counted as frozen, N KiB free beyond
        cfg["free_heap_kib"] = free_heap_kib
    (d / "sim.json").write_text(json.dumps(cfg))
    flashimage.create_blank(image_path(d), board=BOARD)
    if (Path(keys_dir) / "ca.crt").exists():
        from .. import provision

        rec = provision.provision(keys_dir, sim=d, key_floor=key_floor, labels=labels,
                                  iterations=iterations or provision.DEFAULT_ITERATIONS,
                                  cloud=cloud)[0]
        info = rec.for_label()  # the label: password, set-up AP name and passphrase
    else:
        info = {"device_id": device_id or "sim-" + uuid.uuid4().hex[:12], "product": PRODUCT,
                "model": MODEL, "board": BOARD}
        if cloud:
            info["cloud"] = dict(cloud)
        factory = {"anchors.json": json.dumps(keys.anchors(keys_dir, key_floor)).encode(),
                   "identity.json": json.dumps(info).encode()}
        flashimage.write_files(image_path(d), "fctry", factory, board=BOARD)
    result = _tool(d, "factory", str(bundle_path.resolve()))
    if not result["ok"]:
        raise VerifyError(result.get("verdict") or "REFUSED", result["text"])
    return {"dir": str(d), **info, "version": result.get("version")}


# --- processes ---------------------------------------------------------------------------

_started = set()  # the devices this process powered on: see stop_started()


def _pid(path):
    try:
        pid = int(Path(path).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def supervisor_pid(d):
    return _pid(run_dir(d) / "supervisor.pid")


def read_status(d):
    try:
        return json.loads((run_dir(d) / "device.json").read_text())
    except (OSError, ValueError):
        return None


def start(d, timeout=30.0):
    """Power on: start the supervisor (which runs and restarts the device process) and wait
    until the boot stage has verified a slot or entered alert-only mode."""
    d = Path(d)
    if not image_path(d).exists():
        raise UsageError(f"{d} is not a simulated device (no {IMAGE})")
    if supervisor_pid(d):
        raise DeviceError(f"device in {d} is already running")
    rd = run_dir(d)
    (rd / "inbox").mkdir(parents=True, exist_ok=True)
    for stale in ("device.json", "device.pid", "supervisor.pid", "exit.json"):
        (rd / stale).unlink(missing_ok=True)
    log = open(rd / "device.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "host_tools.sim.supervisor", str(d.resolve())],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=str(mpy.REPO), start_new_session=True)
    log.close()
    (rd / "supervisor.pid").write_text(str(proc.pid))
    _started.add(d.resolve())
    return wait_booted(d, timeout, proc)


def wait_booted(d, timeout=30.0, proc=None, after=None):
    """Wait for a boot decision newer than `after` (a status 'boot' counter); returns status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = read_status(d)
        if st and st.get("boot") is not None and (after is None or st["boot"] > after):
            return status(d)
        if proc is not None and proc.poll() is not None or proc is None and not supervisor_pid(d):
            raise DeviceError("device stopped while booting:\n" + log_tail(d))
        time.sleep(0.05)
    raise DeviceError(f"device did not finish booting within {timeout:.0f} s:\n" + log_tail(d))


def wait_api(d, timeout=20.0):
    """Wait until the device's local API accepts connections (it starts after the boot)."""
    host, port = https_address(d).rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        except OSError:
            if not supervisor_pid(d):
                raise DeviceError("device stopped:\n" + log_tail(d)) from None
            time.sleep(0.05)
    raise DeviceError(f"the device's API did not come up within {timeout:.0f} s:\n"
                      + log_tail(d))


def log_tail(d, lines=20):
    try:
        text = (run_dir(d) / "device.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _group_alive(pgid):
    """True while any process of the group is alive (zombies do not count: in a container
    nobody may reap them promptly)."""
    try:
        os.waitpid(pgid, os.WNOHANG)  # reap the supervisor if this process started it
    except ChildProcessError:
        pass
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _kill(d, sig):
    pid = supervisor_pid(d)
    if not pid:
        return False
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.02)
    (run_dir(d) / "supervisor.pid").unlink(missing_ok=True)
    (run_dir(d) / "device.pid").unlink(missing_ok=True)
    return True


def stop_started():
    """Cut the power of every device this process started that still runs (by the PID each
    recorded): what a test session or the demo leaves behind after a failure or Ctrl-C.
    Devices started by other processes are left alone. Returns how many were stopped."""
    stopped = sum(1 for d in sorted(_started) if (run_dir(d) / "supervisor.pid").exists()
                  and powercut(d))
    _started.clear()
    return stopped


def stop(d):
    """Power off in an orderly way (the supervisor stops the device process)."""
    return _kill(d, signal.SIGTERM)


def powercut(d):
    """Cut the power: kill the device and its supervisor at once, mid-whatever."""
    return _kill(d, signal.SIGKILL)


def reboot(d, timeout=30.0):
    """Ask the running device to reset itself (machine.reset()) and wait for the new boot."""
    before = read_status(d) or {}
    request(d, {"op": "reset"}, timeout=10)
    return wait_booted(d, timeout, after=before.get("boot"))


def status(d):
    st = read_status(d) or {}
    running = supervisor_pid(d) is not None
    return {"state": "running" if running else "stopped",
            "mode": st.get("mode"), "slot": st.get("slot"), "version": st.get("version"),
            "trial": st.get("trial"), "last": st.get("last"), "boot": st.get("boot"),
            "reasons": st.get("reasons", [])}


def request(d, doc, payload=None, timeout=60.0):
    """Drop a request into the running device's inbox and wait for its answer."""
    inbox = run_dir(d) / "inbox"
    rid = f"{time.time_ns():020d}"
    if payload is not None:
        (inbox / f"{rid}.bnd").write_bytes(payload)
    tmp = inbox / f"{rid}.tmp"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, inbox / f"{rid}.req")
    res = inbox / f"{rid}.res"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if res.exists():
            answer = json.loads(res.read_text())
            res.unlink()
            return answer
        if not supervisor_pid(d):
            raise DeviceError("device stopped before answering:\n" + log_tail(d))
        time.sleep(0.02)
    raise DeviceError(f"device did not answer within {timeout:.0f} s")


def install(d, bundle_path):
    """Write a bundle into the inactive slot through the device's own installer: via the
    running device's service channel, or offline on the flash image when it is stopped."""
    data = Path(bundle_path).read_bytes() if not isinstance(bundle_path, bytes) else bundle_path
    if supervisor_pid(d):
        answer = request(d, {"op": "install"}, payload=data)
    else:
        tmp = run_dir(d)
        tmp.mkdir(parents=True, exist_ok=True)
        path = tmp / "offline-install.bnd"
        path.write_bytes(data)
        try:
            answer = _tool(d, "install", str(path.resolve()))
        finally:
            path.unlink(missing_ok=True)
    if not answer["ok"]:
        raise VerifyError(answer.get("verdict") or "REFUSED", answer["text"])
    return answer
