#!/usr/bin/env python3
"""Write the signature test vectors that tests/host/test_verifiers.py runs against the device's
verifiers, in Wycheproof's JSON layout (testGroups[].publicKey.pk|uncompressed, tests[] with
tcId, comment, msg, sig, result):

    python tools/gen_vectors.py OUTDIR

ed25519_rfc8032.json    RFC 8032 section 7.1 (TEST 1, 2, 3, 1024, SHA(abc))
ed25519_sign_input.json cryptography-vectors asymmetric/Ed25519/sign.input (all valid)
ed25519_edge.json       edge cases made now with `cryptography` and the arithmetic below
ecdsa_p256_fips186.json [P-256,SHA-256] entries of cryptography-vectors' FIPS 186 SigVer.rsp
ecdsa_p256_edge.json    edge cases made now with `cryptography` and the arithmetic below

Expected results follow RFC 8032 with strict decoding and the cofactorless equation (what
bootloader/ed25519.py implements) and FIPS 186-5 ECDSA. Every edge-case expectation is checked
against `cryptography` here, except three non-canonical Ed25519 keys that OpenSSL decodes
leniently (flagged NonCanonicalKey). Nothing generated is committed: tests write into a tmp dir.
"""

import hashlib
import json
import math
import os
import random
import sys
from pathlib import Path

import cryptography_vectors
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vector_math import (  # noqa: E402  (tools/ is not a package: found beside this file)
    BASE,
    EB,
    EN,
    EP,
    G,
    L,
    P,
    ec_add,
    ec_mul,
    ec_pub,
    ec_ref_verify,
    ec_sig,
    ed_add,
    ed_enc,
    ed_hash,
    ed_mul,
    ed_raw,
    ed_ref_verify,
    ed_secret,
    ed_torsion8,
    ed_x,
)

VECTORS = Path(cryptography_vectors.__file__).parent / "asymmetric"

# ---- file layout ----

def _test(msg, sig, result, comment, flags=()):
    return {"comment": comment, "flags": list(flags), "msg": msg.hex(), "sig": sig.hex(),
            "result": result}


def _doc(algorithm, key_field, groups, source):
    """groups: [(key bytes or a str that is not hex, [tests])] -> a Wycheproof-style document."""
    out = []
    tc = 0
    for key, tests in groups:
        for t in tests:
            tc += 1
            t["tcId"] = tc
        pub = {key_field: key.hex() if isinstance(key, bytes) else key}
        typ = "EddsaVerify" if algorithm == "EDDSA" else "EcdsaP1363Verify"
        out.append({"type": typ, "publicKey": pub, "tests": tests})
    return {"algorithm": algorithm, "source": source, "numberOfTests": tc, "testGroups": out}


# ---- Ed25519 files ----

# RFC 8032 section 7.1: (name, secret key, public key, message, signature)
RFC8032 = [
    ("TEST 1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("TEST 2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("TEST 3", "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("TEST SHA(abc)", "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     hashlib.sha512(b"abc").hexdigest(),
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
     "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
]
# TEST 1024's 1023-byte message is the last entry of sign.input; its keys are checked here
RFC8032_1024 = ("f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
                "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e")


def _sign_input():
    """[(public key, message, signature)] from cryptography-vectors' Ed25519 sign.input."""
    out = []
    for line in (VECTORS / "Ed25519" / "sign.input").read_text().splitlines():
        if line.strip():
            sk_pk, pk, msg, sig_msg, _ = line.split(":")
            out.append((bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig_msg)[:64],
                        bytes.fromhex(sk_pk[:64])))
    return out


def ed25519_rfc8032():
    cases = [(n, bytes.fromhex(sk), bytes.fromhex(pk), bytes.fromhex(m), bytes.fromhex(s))
             for n, sk, pk, m, s in RFC8032]
    last = _sign_input()[-1]
    if last[3].hex() != RFC8032_1024[0] or last[0].hex() != RFC8032_1024[1]:
        raise SystemExit("sign.input's last entry is not RFC 8032 TEST 1024")
    cases.append(("TEST 1024", last[3], last[0], last[1], last[2]))
    groups = []
    for name, sk, pk, msg, sig in cases:
        key = ed25519.Ed25519PrivateKey.from_private_bytes(sk)  # catches a typo above
        if ed_raw(key.public_key()) != pk or key.sign(msg) != sig:
            raise SystemExit(f"RFC 8032 {name} does not reproduce")
        bad = bytearray(sig)
        bad[63] ^= 0x01
        groups.append((pk, [_test(msg, sig, "valid", f"RFC 8032 {name}"),
                            _test(msg + b"\x00", sig, "invalid", f"RFC 8032 {name}, message + 00"),
                            _test(msg, bytes(bad), "invalid", f"RFC 8032 {name}, S bit flipped")]))
    return _doc("EDDSA", "pk", groups, "RFC 8032 section 7.1")


def ed25519_sign_input():
    groups = [(pk, [_test(msg, sig, "valid", "sign.input")]) for pk, msg, sig, _ in _sign_input()]
    return _doc("EDDSA", "pk", groups, "cryptography-vectors asymmetric/Ed25519/sign.input")


def _ed_forge(a, pk, msg, r_bytes):
    """S such that [S]B = R + [k]A when R = identity and A = [a]B: S = k*a."""
    return r_bytes + (ed_hash(r_bytes, pk, msg) * a % L).to_bytes(32, "little")


def _ed_small_order_sig(pk, order, want_zero, rng):
    """(msg, sig) with R = [r]B, S = r for a small-order key A: it verifies exactly when
    [k]A = 0, i.e. k = 0 mod the order of A; pick a message that gives the wanted case."""
    while True:
        msg = rng.randbytes(16)
        r = rng.randrange(1, L)
        rb = ed_enc(ed_mul(r, BASE))
        if (ed_hash(rb, pk, msg) % order == 0) == want_zero:
            return msg, rb + r.to_bytes(32, "little")


def ed25519_edge(rng):
    seed = os.urandom(32)
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    pk = ed_raw(key.public_key())
    a, _ = ed_secret(seed)
    other = ed25519.Ed25519PrivateKey.generate()
    msgs = [b"", b"\x00", rng.randbytes(64), rng.randbytes(128), rng.randbytes(200)]
    main = []
    for m in msgs:
        main.append(_test(m, key.sign(m), "valid", f"valid, {len(m)}-byte message"))
    m = msgs[2]
    sig = key.sign(m)
    s = int.from_bytes(sig[32:], "little")
    main.append(_test(m, other.sign(m), "invalid", "signed by another key"))
    for pos, what in ((0, "R"), (31, "R"), (32, "S"), (63, "S")):
        bad = bytearray(sig)
        bad[pos] ^= 0x01 if pos != 63 else 0x08
        main.append(_test(m, bytes(bad), "invalid", f"bit flipped in {what} (byte {pos})"))
    main.append(_test(m[:-1] + bytes([m[-1] ^ 1]), sig, "invalid", "bit flipped in message"))
    main.append(_test(m, sig[:32] + (s + L).to_bytes(32, "little"), "invalid",
                      "S + L: same point, non-canonical S (malleability)"))
    main.append(_test(m, sig[:32] + L.to_bytes(32, "little"), "invalid", "S = L"))
    main.append(_test(m, sig[:32] + b"\xff" * 32, "invalid", "S = 2**256 - 1"))
    main.append(_test(m, sig[:32] + (s | 1 << 255).to_bytes(32, "little"), "invalid",
                      "S with its top bit set"))
    for bad, what in ((sig[:63], "63 bytes"), (sig + b"\x00", "65 bytes"), (b"", "empty"),
                      (sig + sig, "128 bytes")):
        main.append(_test(m, bad, "invalid", f"signature of {what}"))
    ident = (1).to_bytes(32, "little")
    main.append(_test(m, _ed_forge(a, pk, m, ident), "valid",
                      "R = identity (canonical), S = k*a: the cofactorless equation holds"))
    main.append(_test(m, _ed_forge(a, pk, m, (P + 1).to_bytes(32, "little")), "invalid",
                      "R = identity encoded with y = p + 1 (non-canonical)"))
    main.append(_test(m, _ed_forge(a, pk, m, (1 | 1 << 255).to_bytes(32, "little")), "invalid",
                      "R = identity with the sign bit set (x = -0, non-canonical)"))
    t8 = ed_torsion8()
    main.append(_test(m, _ed_forge(a, pk, m, ed_enc(t8)), "invalid",
                      "R of order 8, S = k*a: only a cofactored verifier accepts"))
    groups = [(pk, main)]

    flipped = bytearray(pk)
    flipped[5] ^= 0x10
    groups.append((bytes(flipped), [_test(m, sig, "invalid", "bit flipped in the public key")]))
    # A identity: canonical is a (small-order) point that RFC 8032 decodes; y = p + 1 is not
    r = rng.randrange(1, L)
    rs = ed_enc(ed_mul(r, BASE)) + r.to_bytes(32, "little")
    groups.append((ident, [_test(m, rs, "valid", "A = identity, R = [S]B")]))
    # OpenSSL decodes these three keys leniently (and accepts); RFC 8032 5.1.3 rejects them
    lenient = ["NonCanonicalKey"]
    groups.append(((P + 1).to_bytes(32, "little"),
                   [_test(m, rs, "invalid", "A = identity encoded with y = p + 1", lenient)]))
    groups.append(((1 | 1 << 255).to_bytes(32, "little"),
                   [_test(m, rs, "invalid", "A = identity with the sign bit set (x = -0)",
                          lenient)]))
    groups.append((P.to_bytes(32, "little"), [_test(m, rs, "invalid", "A with y = p", lenient)]))
    groups.append((b"\xff" * 32, [_test(m, rs, "invalid", "A = ff..ff (y >= p)")]))
    y = 2
    while ed_x(y, 0) is not None:
        y += 1
    groups.append((y.to_bytes(32, "little"), [_test(m, rs, "invalid", "A not on the curve")]))
    groups.append((pk[:31], [_test(m, sig, "invalid", "31-byte public key")]))
    groups.append((pk + b"\x00", [_test(m, sig, "invalid", "33-byte public key")]))
    groups.append(("not hex", [_test(m, sig, "invalid", "unparseable key: counts as rejected")]))
    # small-order public keys: the equation holds exactly when [k]A = 0
    t = (0, 1)
    for i in range(1, 8):
        t = ed_add(t, t8)
        order = 8 // math.gcd(i, 8)
        apk = ed_enc(t)
        tests = []
        if order > 1:
            msg, s0 = _ed_small_order_sig(apk, order, False, rng)
            tests.append(_test(msg, s0, "invalid", f"A of order {order}, [k]A != 0"))
        msg, s1 = _ed_small_order_sig(apk, order, True, rng)
        tests.append(_test(msg, s1, "valid", f"A of order {order}, [k]A = 0"))
        groups.append((apk, tests))
    # mixed-order key A' = A + T8 signed with a: [S]B - [k]A' = R - [k]T8
    apk = ed_enc(ed_add(ed_mul(a, BASE), t8))
    for want in (True, False):
        while True:
            msg = rng.randbytes(16)
            r = rng.randrange(1, L)
            rb = ed_enc(ed_mul(r, BASE))
            k = ed_hash(rb, apk, msg)
            if (k % 8 == 0) == want:
                break
        sig2 = rb + ((r + k * a) % L).to_bytes(32, "little")
        groups.append((apk, [_test(msg, sig2, "valid" if want else "invalid",
                                   "A with an order-8 component, k = 0 mod 8" if want else
                                   "A with an order-8 component, k != 0 mod 8 (cofactorless)")]))
    doc = _doc("EDDSA", "pk", groups, "tools/gen_vectors.py edge cases")
    _cross_check(doc, "pk", ed_ref_verify, "NonCanonicalKey")
    return doc


def _cross_check(doc, key_field, ref_verify, allowed_flag=None):
    """Every expectation must match `cryptography`, except tests flagged `allowed_flag`."""
    for g in doc["testGroups"]:
        key = g["publicKey"][key_field]
        for t in g["tests"]:
            if allowed_flag in t["flags"]:
                continue
            want = t["result"] == "valid"
            got = key != "not hex" and ref_verify(bytes.fromhex(key), bytes.fromhex(t["msg"]),
                                                  bytes.fromhex(t["sig"]))
            if got != want:
                raise SystemExit(f"cryptography disagrees on edge case {t['comment']!r}")


# ---- ECDSA P-256 files ----

def ecdsa_p256_fips186():
    groups = []
    for rsp in sorted((VECTORS / "ECDSA").glob("FIPS_186-*/SigVer.rsp")):
        section = None
        entry = {}
        for line in rsp.read_text().splitlines() + [""]:
            line = line.strip()
            if line.startswith("["):
                section = line
            elif " = " in line and section == "[P-256,SHA-256]":
                k, v = line.split(" = ", 1)
                entry[k] = v
                if k == "Result":
                    pub = b"\x04" + bytes.fromhex(entry["Qx"].rjust(64, "0")) + \
                        bytes.fromhex(entry["Qy"].rjust(64, "0"))
                    sig = bytes.fromhex(entry["R"].rjust(64, "0") + entry["S"].rjust(64, "0"))
                    result = "valid" if v.startswith("P") else "invalid"
                    groups.append((pub, [_test(bytes.fromhex(entry["Msg"]), sig, result,
                                               f"{rsp.parent.name} SigVer {v}")]))
                    entry = {}
    if not groups:
        raise SystemExit("no [P-256,SHA-256] entries in cryptography-vectors' SigVer.rsp")
    return _doc("ECDSA", "uncompressed", groups, "cryptography-vectors ECDSA FIPS_186-*/SigVer.rsp")


def _ec_sign(key, msg):
    r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
    return r, s


def _ec_x_at_least_n(rng, msg):
    """A key and signature (r, s) that verify with x(R) in [n, p), so r = x(R) - n."""
    while True:
        x = rng.randrange(EN, EP)
        yy = (x ** 3 - 3 * x + EB) % EP
        y = pow(yy, (EP + 1) // 4, EP)
        if y * y % EP == yy:
            break
    s = rng.randrange(1, EN)
    r = x - EN
    e = int.from_bytes(hashlib.sha256(msg).digest(), "big")
    w = pow(s, -1, EN)
    u1, u2 = e * w % EN, r * w % EN
    # Q = u2^-1 (R - u1 G)
    neg = ec_mul(u1, G)
    q = ec_mul(pow(u2, -1, EN), ec_add((x, y), (neg[0], (-neg[1]) % EP)))
    return ec_pub(q), r, s, x


def ecdsa_p256_edge(rng):
    key = ec.generate_private_key(ec.SECP256R1())
    q = key.private_numbers().private_value
    pub = key.public_key().public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.UncompressedPoint)
    other = ec.generate_private_key(ec.SECP256R1())
    msgs = [b"", b"abc", rng.randbytes(64), rng.randbytes(128)]
    main = []
    for m in msgs:
        r, s = _ec_sign(key, m)
        main.append(_test(m, ec_sig(r, s), "valid", f"valid, {len(m)}-byte message"))
        main.append(_test(m, ec_sig(r, EN - s), "valid", "high s (n - s): ECDSA accepts it"))
    m = msgs[2]
    r, s = _ec_sign(key, m)
    sig = ec_sig(r, s)
    ro, so = _ec_sign(other, m)
    main.append(_test(m, ec_sig(ro, so), "invalid", "signed by another key"))
    for pos, what in ((31, "r"), (0, "r"), (63, "s"), (32, "s")):
        bad = bytearray(sig)
        bad[pos] ^= 0x01
        main.append(_test(m, bytes(bad), "invalid", f"bit flipped in {what} (byte {pos})"))
    main.append(_test(m[:-1] + bytes([m[-1] ^ 1]), sig, "invalid", "bit flipped in message"))
    for rr, ss, what in ((0, s, "r = 0"), (r, 0, "s = 0"), (0, 0, "r = s = 0"),
                         (EN, s, "r = n"), (r, EN, "s = n"), (r + EN if r + EN < 2**256 else EN + 1,
                                                               s, "r >= n"),
                         (r, EN + 1, "s = n + 1"), (2**256 - 1, s, "r = 2**256 - 1"),
                         (r, 2**256 - 1, "s = 2**256 - 1"), (1, 1, "r = s = 1"),
                         (EN - 1, EN - 1, "r = s = n - 1")):
        main.append(_test(m, ec_sig(rr, ss), "invalid", what))
    der = key.sign(m, ec.ECDSA(hashes.SHA256()))
    for bad, what in ((sig[:63], "63 bytes"), (sig + b"\x00", "65 bytes"), (b"", "empty"),
                      (der, "DER-encoded")):
        main.append(_test(m, bad, "invalid", f"signature of {what}"))
    # u1 G + u2 Q = infinity: r = -e/q mod n, any s
    e = int.from_bytes(hashlib.sha256(m).digest(), "big")
    r_inf = -e * pow(q, -1, EN) % EN
    main.append(_test(m, ec_sig(r_inf, s), "invalid", "u1*G + u2*Q is the point at infinity"))
    groups = [(pub, main)]

    qpub, rx, sx, x = _ec_x_at_least_n(rng, m)
    groups.append((qpub, [_test(m, ec_sig(rx, sx), "valid", "x(R) >= n: r = x(R) - n"),
                          _test(m, ec_sig(x, sx), "invalid", "x(R) >= n given unreduced as r")]))
    for k, what in ((1, "Q = G"), (EN - 1, "Q = -G")):
        kk = ec.derive_private_key(k, ec.SECP256R1())
        kpub = kk.public_key().public_bytes(serialization.Encoding.X962,
                                            serialization.PublicFormat.UncompressedPoint)
        groups.append((kpub, [_test(mm, ec_sig(*_ec_sign(kk, mm)), "valid", what)
                              for mm in msgs]))
    x0, y0 = int.from_bytes(pub[1:33], "big"), int.from_bytes(pub[33:], "big")
    bad_keys = [
        (b"\x04" + pub[1:33] + ((y0 + 1) % EP).to_bytes(32, "big"), "key not on the curve"),
        (b"\x04" + EP.to_bytes(32, "big") + pub[33:], "key x = p"),
        (b"\x04" + (x0 + EP).to_bytes(32, "big") + pub[33:] if x0 + EP < 2**256 else
         b"\x04" + b"\xff" * 32 + pub[33:], "key x >= p"),
        (b"\x04" + pub[1:33] + (y0 + EP).to_bytes(32, "big") if y0 + EP < 2**256 else
         b"\x04" + pub[1:33] + b"\xff" * 32, "key y >= p"),
        (b"\x00", "key = point at infinity (00)"),
        (b"\x04" + bytes(64), "key (0, 0)"),
        (bytes([2 + (y0 & 1)]) + pub[1:33], "compressed key (not accepted)"),
        (b"\x05" + pub[1:], "key with prefix 05"),
        (pub[:64], "64-byte key"),
        (pub + b"\x00", "66-byte key"),
    ]
    for bk, what in bad_keys:
        groups.append((bk, [_test(m, sig, "invalid", what)]))
    groups.append(("not hex", [_test(m, sig, "invalid", "unparseable key: counts as rejected")]))
    doc = _doc("ECDSA", "uncompressed", groups, "tools/gen_vectors.py edge cases")
    _cross_check(doc, "uncompressed", ec_ref_verify)
    return doc


def generate(outdir, seed=None):
    """Write all vector files into `outdir`; return {name: path}."""
    rng = random.Random(seed)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    docs = {
        "ed25519_rfc8032": ed25519_rfc8032(),
        "ed25519_sign_input": ed25519_sign_input(),
        "ed25519_edge": ed25519_edge(rng),
        "ecdsa_p256_fips186": ecdsa_p256_fips186(),
        "ecdsa_p256_edge": ecdsa_p256_edge(rng),
    }
    paths = {}
    for name, doc in docs.items():
        paths[name] = outdir / f"{name}.json"
        paths[name].write_text(json.dumps(doc, indent=1) + "\n")
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    for path in generate(sys.argv[1]).values():
        print(f"{path}: {json.loads(path.read_text())['numberOfTests']} tests")
