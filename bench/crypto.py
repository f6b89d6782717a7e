"""Signature verification speed: the boot stage's verifiers on the simulated device (unix port),
timed inside micropython with time.ticks_us, against `cryptography` on the host in the same run."""

import os
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from host_tools import mpy

# stdin: "ed|ec|int KEY MSG SIG" lines (hex); prints "name median_us" for each, then sha512
DEVICE_SCRIPT = """
import sys, time
from binascii import unhexlify
import ed25519, p256, sha512

def median_us(f, args, runs):
    f(*args)  # first call builds the lazily computed base-point table
    ts = []
    for _ in range(runs):
        t0 = time.ticks_us()
        ok = f(*args)
        ts.append(time.ticks_diff(time.ticks_us(), t0))
        assert ok is not False
    ts.sort()
    return ts[len(ts) // 2]

runs = int(sys.argv[1])
for line in sys.stdin:
    name, key, msg, sig = line.split()
    args = (unhexlify(key), unhexlify(msg), unhexlify(sig))
    if name == "int":
        ed25519._use(ed25519._Int())  # the portable backend that 32-bit ports run
    f = p256.verify if name == "ec" else ed25519.verify
    print(name, median_us(f, args, runs if name != "int" else max(5, runs // 5)))
print("sha", median_us(sha512.sha512, (bytes(128),), runs))
"""


def _native_ms(verify, runs):
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        verify()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1000


def run(runs=60):
    msg = os.urandom(64)  # the size of what the boot stage verifies (the bundle header)
    edk = ed25519.Ed25519PrivateKey.generate()
    edpub = edk.public_key()
    edsig = edk.sign(msg)
    edraw = edpub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    eck = ec.generate_private_key(ec.SECP256R1())
    ecpub = eck.public_key()
    der = eck.sign(msg, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    ecraw = ecpub.public_bytes(serialization.Encoding.X962,
                               serialization.PublicFormat.UncompressedPoint)
    ecsig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    lines = [f"ed {edraw.hex()} {msg.hex()} {edsig.hex()}",
             f"ec {ecraw.hex()} {msg.hex()} {ecsig.hex()}",
             f"int {edraw.hex()} {msg.hex()} {edsig.hex()}"]
    with tempfile.TemporaryDirectory(prefix="bench-crypto-") as tmp:
        script = Path(tmp) / "crypto_bench.py"
        script.write_text(DEVICE_SCRIPT)
        proc = mpy.run(script, [runs], input="\n".join(lines) + "\n", timeout=600)
    if proc.returncode:
        raise RuntimeError(proc.stderr or proc.stdout)
    dev = {name: int(us) / 1000 for name, us in
           (line.split() for line in proc.stdout.strip().splitlines())}
    ed_native = _native_ms(lambda: edpub.verify(edsig, msg), runs * 10)
    ec_native = _native_ms(lambda: ecpub.verify(der, msg, ec.ECDSA(hashes.SHA256())), runs * 10)
    return {
        "ed25519_verify_ms": round(dev["ed"], 3),
        "ecdsa_p256_verify_ms": round(dev["ec"], 3),
        "ed25519_verify_native_ms": round(ed_native, 4),
        "ecdsa_p256_verify_native_ms": round(ec_native, 4),
        "ed25519_verify_ratio_vs_native": round(dev["ed"] / ed_native, 1),
        "ecdsa_p256_verify_ratio_vs_native": round(dev["ec"] / ec_native, 1),
        "ed25519_verify_int_backend_ms": round(dev["int"], 3),
        "sha512_128b_ms": round(dev["sha"], 3),
    }
