"""Application benchmarks on simulated devices: the control loop during an update, update
throughput against plain TLS, heap growth with update size, smallest heap for the app."""

import json
import os
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from host_tools import bundle, ca, keys, mpy, push, sim

HERE = Path(__file__).parent / "device"
PAGES = ("/login", "/setup", "/status", "/thermostat", "/updates", "/privacy", "/consent",
         "/delete", "/reset", "/security", "/static/style.css", "/.well-known/security.txt",
         "/api/privacy")
MIB = 1 << 20


def _bundle(kd, out, version, pad, nfiles=4):
    """The app plus `nfiles` incompressible asset files adding up to `pad` bytes: bundles of
    different sizes with the same number of files, so only the size differs."""
    meta, files = bundle.collect_app()
    for i in range(nfiles if pad else 0):
        files[f"assets/blob{i}.bin"] = os.urandom(pad // nfiles)
    bundle.build(kd, ["unix"], version, 1, out=out, files=files, product=meta["product"])
    return out


class Bench:
    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.kd = self.tmp / "keys"
        keys.init(self.kd)
        ca.init(self.kd)
        self.v1 = _bundle(self.kd, self.tmp / "v1.bin", "1.0.0", 0)
        self.u1 = _bundle(self.kd, self.tmp / "u1.bin", "1.1.0", MIB)
        self.u4 = _bundle(self.kd, self.tmp / "u4.bin", "1.2.0", 4 * MIB)
        self.n = 0

    def device(self, **kw):
        self.n += 1
        d = self.tmp / f"dev{self.n}"
        info = sim.create(d, self.kd, self.v1, iterations=1000, **kw)
        sim.start(d)
        sim.wait_api(d)
        return d, push.Device(sim.https_address(d), info["password"], ca=self.kd / "ca.crt",
                              name=info["device_id"])

    def upload(self, dev, path):
        """POST a bundle; returns (seconds for the whole request, device's answer)."""
        data = Path(path).read_bytes()
        dev.login()
        t0 = time.perf_counter()
        status, doc = dev.call("POST", "/api/update", data,
                               {"Content-Type": "application/octet-stream"})
        elapsed = time.perf_counter() - t0
        if status != 200:
            raise RuntimeError(f"upload refused: {status} {doc}")
        return elapsed, doc

    def control_and_throughput(self):
        d, dev = self.device()
        try:
            time.sleep(5)  # an idle window of the same order as the transfer
            st = dev.status()["thermostat"]
            idle = st["max_gap_ms"] / st["tick_ms"]
            secs, doc = self.upload(dev, self.u1)
            update = doc["control_max_gap_ms"] / st["tick_ms"]
        finally:
            sim.powercut(d)
        plain = self.plain_tls_seconds(self.u1.stat().st_size)
        return {"control_gap_ratio_idle": round(idle, 3),
                "control_gap_ratio_update": round(update, 3),
                "update_1mib_seconds": round(secs, 3), "plain_tls_1mib_seconds": round(plain, 3),
                "update_throughput_ratio": round(plain / secs, 3)}

    def plain_tls_seconds(self, size):
        """The same bytes to a bare TLS sink on the device runtime (same ssl, same asyncio
        streams, read by the update path's own code, wrapped by httpd's), with the same
        client, timed as the update is: from the connection, through the handshake, to the
        answer. The transport's ceiling."""
        port = sim._free_port()
        cert, key = self.tmp / "sink.crt.der", self.tmp / "sink.key.der"
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        k = ec.generate_private_key(ec.SECP256R1())
        c = ca.issue_device(ca.load(self.kd), "sink", k.public_key())
        cert.write_bytes(c.public_bytes(serialization.Encoding.DER))
        key.write_bytes(k.private_bytes(serialization.Encoding.DER,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        env = {**os.environ, "MICROPYPATH": mpy.device_path("unix", [mpy.REPO / "firmware"])}
        proc = subprocess.Popen([mpy.micropython_path(), str(HERE / "tls_sink.py"), str(port),
                                 str(cert), str(key)], env=env, stdout=subprocess.PIPE)
        try:
            if proc.stdout.readline().strip() != b"READY":
                raise RuntimeError("the TLS sink did not start")
            ctx = ssl.create_default_context(cafile=str(self.kd / "ca.crt"))
            data = os.urandom(size)
            t0 = time.perf_counter()
            raw = socket.create_connection(("127.0.0.1", port), timeout=30)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s = ctx.wrap_socket(raw, server_hostname="sink")
            s.sendall(b"%d\n" % size)
            view = memoryview(data)
            for off in range(0, size, push.CHUNK):
                s.sendall(view[off:off + push.CHUNK])
            answer = s.recv(64)
            elapsed = time.perf_counter() - t0
            s.close()
            if int(answer) != size:
                raise RuntimeError(f"sink received {answer!r} of {size}")
            return elapsed
        finally:
            proc.kill()
            proc.wait()

    def peak_heap(self, path):
        """Peak live heap (after a collection, sampled every 10 ms) of a fresh device running
        v1 while it receives `path`."""
        d, dev = self.device(heap_sample_ms=10)
        try:
            (d / "run" / "heap.json").unlink(missing_ok=True)
            self.upload(dev, path)
            return json.loads((d / "run" / "heap.json").read_text())["peak_live_bytes"]
        finally:
            sim.powercut(d)

    def heap_growth(self):
        p1, p4 = self.peak_heap(self.u1), self.peak_heap(self.u4)
        return {"update_peak_heap_1mib_bytes": p1, "update_peak_heap_4mib_bytes": p4,
                "update_heap_growth_bytes": p4 - p1}

    def app_works_at(self, kib, frozen=True):
        """Does the whole app (API, TLS, an update in flight, restart, self-test, confirm)
        work with `kib` KiB? frozen: the boot stage and HAL count as frozen firmware and kib
        is the heap left for the rest; otherwise kib is the unix port's whole -X heapsize."""
        # heapsize: room for the ballast and the map of the ROMFS region, which the unix port
        # keeps in its heap (romwindow.RomWindow, allocated before the ballast: flash on a board)
        kw = {"free_heap_kib": kib, "heapsize": "4m"} if frozen else {"heapsize": f"{kib}k"}
        try:
            d, dev = self.device(**kw)
        except Exception:  # noqa: BLE001 - did not even boot at this size
            return False
        try:
            self.upload(dev, self.u1)
            return _wait_confirmed(dev)["version"] == "1.1.0"
        except Exception:  # noqa: BLE001 - any failure at this heap size means "does not work"
            return False
        finally:
            sim.powercut(d)

    def pages_work_at(self, kib):
        """Does every owner page (and the notice API) answer 200 to a logged-in owner, one
        after the other, with `kib` KiB free beside the frozen boot stage?"""
        try:
            d, dev = self.device(free_heap_kib=kib, heapsize="4m")
        except Exception:  # noqa: BLE001 - did not even boot at this size
            return False
        try:
            dev.login()
            return all(dev.page(p)[0] == 200 for p in PAGES)
        except Exception:  # noqa: BLE001 - any failure at this heap size means "does not work"
            return False
        finally:
            sim.powercut(d)

    def min_heap(self, frozen=True, lo=16, hi=512, works=None):
        works = works or (lambda kib: self.app_works_at(kib, frozen))
        if not works(hi):
            raise RuntimeError(f"the app does not work even with {hi} KiB")
        while hi - lo > 4:  # 4 KiB resolution
            mid = (lo + hi) // 2
            if works(mid):
                hi = mid
            else:
                lo = mid
        return hi


def _wait_confirmed(dev, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = dev.status()
            if not st["trial"] and st["update"].get("state") == "idle":
                return st
        except Exception:  # noqa: BLE001 - restarting
            pass
        time.sleep(0.3)
    raise RuntimeError("device did not confirm the update")


def run():
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        b = Bench(tmp)
        out = {}
        out.update(b.control_and_throughput())
        out.update(b.heap_growth())
        out["app_min_heap_kib"] = b.min_heap(frozen=True)
        # Unfrozen: the whole -X heapsize, which on the unix port also holds the map of the
        # ROMFS region (the 1 MiB update's image included): not a board's figure.
        out["app_min_heap_unfrozen_kib"] = b.min_heap(frozen=False, hi=4096)
        out["app_pages_min_heap_kib"] = b.min_heap(works=b.pages_work_at)
        return out
