"""Certificate renewal without a broker: the device reads certificates and checks a renewed
one on the unix port (firmware/certrenew.py); the service issues one only for a due
certificate of its own CA naming the asking device (host_tools/cloud/renewal.py). The end-to-end
run is tests/e2e/test_renewal.py."""

import base64
import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from host_tools import ca, keys, mpy
from host_tools.cloud.renewal import Renewer

SCRIPT = mpy.REPO / "tests" / "device" / "cert_fields.py"
UTC = datetime.UTC
EKU = (x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,)


@pytest.fixture(scope="module")
def maker(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    keys.init(d)
    ca.init(d)
    return d


def leaf(maker_dir, cn, key, nb, life_s, hosts=None):
    m = ca.load(maker_dir)
    return ca.issue_leaf(m, cn, key.public_key(), EKU, hosts or (cn,),
                         nb + datetime.timedelta(seconds=life_s), nb + ca.BACKDATE)


def der(cert):
    return cert.public_bytes(Encoding.DER)


def run_device(tmp_path, cases):
    f = tmp_path / "cases.jsonl"
    f.write_text("".join(json.dumps(c) + "\n" for c in cases))
    proc = mpy.run(SCRIPT, [f], extra_path=[mpy.REPO / "firmware"])
    assert proc.returncode == 0, proc.stderr
    return [json.loads(x) for x in proc.stdout.splitlines()]


def test_the_device_reads_certificates_as_cryptography_does(tmp_path, maker):
    key = ec.generate_private_key(ec.SECP256R1())
    certs = [leaf(maker, "dev-1", key, datetime.datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC),
                  3600 * 24 * 400),
             leaf(maker, "dev-2", key, datetime.datetime(2049, 12, 31, 23, 59, 0, tzinfo=UTC),
                  86400 * 3),  # ends in 2050: GeneralizedTime
             leaf(maker, "dev-3", key, datetime.datetime(2000, 2, 29, 0, 0, 0, tzinfo=UTC), 40)]
    cases = []
    for c in certs:
        nb, na = c.not_valid_before_utc.timestamp(), c.not_valid_after_utc.timestamp()
        at = [int(nb + 0.8 * (na - nb)) - 1, int(nb + 0.8 * (na - nb)) + 1, 0]
        cases.append({"op": "fields", "der": der(c).hex(), "at": at})
    cases += [{"op": "fields", "der": d, "at": [0]} for d in ("", "3003020101", "30" + "82ffff")]
    got = run_device(tmp_path, cases)
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    for c, g in zip(certs, got):
        assert g["not_before"] == int(c.not_valid_before_utc.timestamp())
        assert g["not_after"] == int(c.not_valid_after_utc.timestamp())
        assert bytes.fromhex(g["spki"]) == spki
        assert g["due"] == [False, True, False]  # clock not set: never due
    assert all(isinstance(g, str) and g.startswith("ValueError") for g in got[3:]), got[3:]


def test_the_device_takes_only_a_later_certificate_for_its_own_key(tmp_path, maker):
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    cur = leaf(maker, "dev-1", key, now, 100)
    b64 = lambda c: base64.b64encode(der(c)).decode()  # noqa: E731
    good = leaf(maker, "dev-1", key, now + datetime.timedelta(seconds=50), 100)
    cases = [{"op": "check", "cur": der(cur).hex(), "new": b64(good)},
             {"op": "check", "cur": der(cur).hex(), "new": b64(leaf(maker, "dev-1", other, now,
                                                                  200))},
             {"op": "check", "cur": der(cur).hex(), "new": b64(leaf(maker, "dev-2", key, now,
                                                                  200))},
             {"op": "check", "cur": der(cur).hex(), "new": b64(leaf(maker, "dev-1", key, now,
                                                                  50))},
             {"op": "check", "cur": der(cur).hex(), "new": "not base64 !"},
             {"op": "check", "cur": der(cur).hex(), "new": "A" * 4000}]
    got = run_device(tmp_path, cases)
    assert bytes.fromhex(got[0]) == der(good)
    assert "not for this device's key" in got[1]
    assert "another subject" in got[2]
    assert "does not expire later" in got[3]
    assert all(g.startswith("ValueError") for g in got[4:]), got


def test_the_service_renews_only_what_it_should(tmp_path, maker):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    ago = lambda s: now - datetime.timedelta(seconds=s)  # noqa: E731
    logs = []
    r = Renewer(maker, log=logs.append)
    req = lambda c: {"type": "cert_renew", "cert": base64.b64encode(der(c)).decode()}  # noqa
    t = now.timestamp()
    assert r.handle("dev-1", req(leaf(maker, "dev-1", key, ago(50), 100)), t) is None
    assert "not due" in logs[-1]
    assert r.handle("dev-2", req(leaf(maker, "dev-1", key, ago(90), 100)), t) is None
    assert "another device" in logs[-1]
    stranger = tmp_path / "stranger"
    keys.init(stranger)
    ca.init(stranger)
    assert r.handle("dev-1", req(leaf(stranger, "dev-1", key, ago(90), 100)), t) is None
    assert "not issued by the manufacturer CA" in logs[-1]
    assert r.handle("dev-1", {"type": "cert_renew", "cert": "!!"}, t) is None
    assert r.handle("dev-1", {"type": "cert_renew"}, t) is None
    assert r.issued == {}
    old = leaf(maker, "dev-1", key, ago(90), 100)
    cmd = r.handle("dev-1", req(old), t)
    new = x509.load_der_x509_certificate(base64.b64decode(cmd["cert"]))
    assert cmd["cmd"] == "cert" and new.public_key() == key.public_key()
    assert new.subject == old.subject and new.issuer == old.issuer
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == \
        old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    life = (new.not_valid_after_utc - new.not_valid_before_utc).total_seconds()
    assert life == 100 and new.not_valid_before_utc.timestamp() == t - 10
    assert ca.verify_device(ca.load(maker).cert, new)
    assert r.handle("dev-1", req(old), t + 1) is None and "moments ago" in logs[-1]
    assert r.issued == {"dev-1": 1}
