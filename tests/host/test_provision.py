"""Factory provisioning: CA, unique ids and passwords, certificates, factory records on every
target (sim, image, serial over a pseudo-terminal), ledger, labels, and the device's
credentials (PBKDF2, change rules, throttling) under the unix port."""

import base64
import hashlib
import json
import math
import re
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from littlefs import LittleFS
from PIL import Image

from host_tools import ca, flashimage, keys, label, ledger, mpy, onboarding, provision
from host_tools.cli import cli as iotctl_group
from host_tools.errors import DeviceError, KeyFileError, UsageError

REPO = Path(__file__).resolve().parents[2]
DEVICE = REPO / "tests" / "device"
FIRMWARE = REPO / "firmware"
DEVICE_BLOCKLIST = FIRMWARE / "blocklist.txt"
ITER = 1000  # low: these tests are about correctness, not the cost of a guess
PW_RE = re.compile(rb"[2-9a-hjkmnp-z]{4}-[2-9a-hjkmnp-z]{4}-[2-9a-hjkmnp-z]{4}-[2-9a-hjkmnp-z]{4}")


def _run_device(script, args, stdin, timeout=60):
    proc = mpy.run(DEVICE / script, args, extra_path=[FIRMWARE], input=json.dumps(stdin),
                   timeout=timeout)
    assert proc.returncode == 0 and proc.stdout.startswith("OK"), proc.stdout + proc.stderr
    return proc.stdout


def _secrets_of(records):
    """Byte strings that must never leave the device's own factory partition."""
    out = []
    for rec in records:
        pw = rec.password.encode()
        der = rec.files["device.key.der"]
        key = serialization.load_der_private_key(der, None)
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        secret = rec.files["secret.bin"]
        out += [pw, pw.replace(b"-", b""), der, pem, base64.b64encode(der), scalar,
                scalar.hex().encode(), secret, secret.hex().encode(),
                rec.ap_passphrase.encode()]
    return out


def _scan(root, needles, allowed=()):
    """Every file under root (except `allowed`) is free of every needle."""
    allowed = {Path(p).resolve() for p in allowed}
    scanned = 0
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file() or path.resolve() in allowed:
            continue
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"a secret leaked into {path}"
        scanned += 1
    return scanned


# --- the CA ------------------------------------------------------------------------------

def test_ca_init(tmp_path):
    d = tmp_path / "keys"
    info = ca.init(d)
    assert stat.S_IMODE((d / ca.CA_KEY).stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((d / ca.CA_CERT).read_bytes())
    assert cert.issuer == cert.subject and info["sha256"] == ca.fingerprint(cert)
    cert.verify_directly_issued_by(cert)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and not ku.value.digital_signature
    assert cert.public_key().curve.name == "secp256r1"
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert days >= 20 * 365
    before = (d / ca.CA_KEY).read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        ca.init(d)
    assert (d / ca.CA_KEY).read_bytes() == before
    with pytest.raises(KeyFileError, match="no manufacturer CA"):
        ca.load(tmp_path / "elsewhere")


# --- passwords and ids -------------------------------------------------------------------

def test_password_generator():
    assert provision.password_bits() >= 60
    assert not set("0o1liI") & set(provision.PASSWORD_ALPHABET)
    pw = provision.generate_password()
    assert PW_RE.fullmatch(pw.encode())
    # A draw that hits the blocklist is drawn again.
    import random

    first = provision.generate_password(blocklist=frozenset(), choice=random.Random(7).choice)
    again = provision.generate_password(blocklist=frozenset({first}),
                                        choice=random.Random(7).choice)
    assert again != first and PW_RE.fullmatch(again.encode())
    # The shipped list is the real one, and the device's copy is a subset of it.
    host = provision.load_blocklist()
    assert len(host) == 30000 and {"password", "123456", "qwerty", "baseball"} <= host
    device = provision.load_blocklist(DEVICE_BLOCKLIST)
    assert device <= host and all(8 <= len(w) <= 128 for w in device)
    assert "baseball" in device and "zxcvbn" in DEVICE_BLOCKLIST.read_text()[:400]


def test_thousand_devices(factory, tmp_path):
    """1,000 devices at library level (no flash write): distinct ids, passwords, keys and
    certificates, all issued by the CA; the ledger holds them and no secret."""
    db = tmp_path / "ledger.sqlite"
    records = provision.provision(factory, 1000, iterations=ITER, ledger=db, station="line-1")
    assert len(records) == 1000
    for attr in ("device_id", "password", "cert_serial", "cert_sha256"):
        assert len({getattr(r, attr) for r in records}) == 1000, attr
    assert len({r.files["device.key.der"] for r in records}) == 1000
    assert len({r.files["secret.bin"] for r in records}) == 1000
    assert len({r.ap_passphrase for r in records}) == 1000
    assert all(len(r.files["secret.bin"]) == 32 and r.ap_passphrase ==
               onboarding.ap_passphrase(r.files["secret.bin"]) for r in records)
    ca_cert = ca.load(factory).cert
    anchors = json.dumps(keys.anchors(factory), sort_keys=True, separators=(",", ":")).encode()
    for i, rec in enumerate(records):
        assert re.fullmatch(r"th-[0-9a-hjkmnp-tv-z]{12}", rec.device_id)
        assert PW_RE.fullmatch(rec.password.encode())
        assert rec.device_id.split("-")[1] not in rec.password.replace("-", "")
        assert set(rec.files) == set(provision.FACTORY_FILES)
        cert = x509.load_der_x509_certificate(rec.files["device.crt.der"])
        assert ca.verify_device(ca_cert, cert)
        assert format(cert.serial_number, "x") == rec.cert_serial
        assert hashlib.sha256(rec.files["device.crt.der"]).hexdigest() == rec.cert_sha256
        key = serialization.load_der_private_key(rec.files["device.key.der"], None)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()
        assert rec.files["anchors.json"] == anchors
        ident = json.loads(rec.files["identity.json"])
        assert ident == {"device_id": rec.device_id, "product": "iot-thermostat",
                         "model": "TH-1", "board": "unix", "provisioned": rec.provisioned,
                         "station": "line-1"}
        doc = json.loads(rec.files["password.json"])
        assert doc["alg"] == "pbkdf2-sha256" and doc["iterations"] == ITER
        assert len(bytes.fromhex(doc["salt"])) == 16 and len(bytes.fromhex(doc["hash"])) == 32
        # Its own password and not its neighbour's.
        assert provision.check_password(doc, rec.password)
        assert not provision.check_password(doc, records[i - 1].password)
    assert len({json.loads(r.files["password.json"])["salt"] for r in records}) == 1000
    cert = x509.load_der_x509_certificate(records[0].files["device.crt.der"])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == records[0].device_id
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert records[0].device_id in san.get_values_for_type(x509.DNSName)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    with ledger.Ledger.open(db) as lg:
        rows = lg.rows()
        assert {r["device_id"] for r in rows} == {r.device_id for r in records}
        assert all(r["station"] == "line-1" and r["model"] == "TH-1" for r in rows)
        by_id = {r.device_id: r for r in records}
        assert all(row["cert_sha256"] == by_id[row["device_id"]].cert_sha256 and
                   row["cert_serial"] == by_id[row["device_id"]].cert_serial for row in rows)
    # No password and no device key in the ledger or in any other file written.
    assert _scan(tmp_path, _secrets_of(records)) >= 5


# --- targets -----------------------------------------------------------------------------

def test_image_target(factory, tmp_path):
    out = tmp_path / "img" / "{device_id}.bin"
    records = provision.provision(factory, 2, iterations=ITER, image=out, board="esp32")
    part = flashimage.find_partition("fctry", "esp32")
    for rec in records:
        path = Path(str(out).format(device_id=rec.device_id))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        data = bytearray(path.read_bytes())
        assert len(data) == part.size
        assert rec.target == f"image:{path}@0x{part.offset:x}"
        fs = LittleFS(mount=False, **flashimage.lfs_geometry("fctry", "esp32"))
        fs.context.buffer[:] = data
        fs.mount()
        assert sorted(fs.listdir("/")) == sorted(provision.FACTORY_FILES)
        for name in provision.FACTORY_FILES:
            with fs.open(name, "rb") as f:
                assert f.read() == rec.files[name]
        assert json.loads(rec.files["identity.json"])["board"] == "esp32"
    # Refuses to overwrite an image, and several devices need the placeholder.
    with pytest.raises(UsageError, match="refusing to overwrite"):
        provision.write_image(records[0], out)
    with pytest.raises(UsageError, match="placeholder"):
        provision.provision(factory, 2, image=tmp_path / "one.bin")


def test_sim_and_serial_targets_on_the_device(factory, tmp_path):
    """Two simulated boards written directly, one over a pseudo-terminal with mpremote;
    then, on the device, each accepts its own password and no other, before and after an
    owner change and a factory reset."""
    db = tmp_path / "ledger.sqlite"
    records = [provision.provision(factory, iterations=ITER, ledger=db,
                                   sim=tmp_path / f"sim{i}")[0] for i in range(2)]
    port_dir = tmp_path / "sim-serial"
    with provision.serial_sim(port_dir) as port:
        assert port.startswith("/dev/pts/")
        rec = provision.provision(factory, iterations=ITER, ledger=db, port=port)[0]
        assert rec.target == f"port:{port}"
        # Once provisioned, the board refuses a second record unless forced.
        with pytest.raises(DeviceError, match="ALREADY_PROVISIONED"):
            provision.provision(factory, iterations=ITER, ledger=db, port=port)
    records.append(rec)
    dirs = [tmp_path / "sim0", tmp_path / "sim1", port_dir]
    for rec, d in zip(records, dirs):
        files = flashimage.read_files(d / "flash.bin", "fctry")
        assert files == rec.files
    with pytest.raises(DeviceError, match="already provisioned"):
        provision.provision(factory, iterations=ITER, ledger=db, sim=dirs[0])
    with ledger.Ledger.open(db) as lg:  # the refused attempts left no row behind
        assert sorted(r["device_id"] for r in lg.rows()) == sorted(r.device_id for r in records)
    boards = [{"dir": str(d), "password": r.password} for r, d in zip(records, dirs)]
    assert _run_device("credentials_factory.py", [DEVICE_BLOCKLIST], {"boards": boards}) \
        .strip() == "OK 3"
    # Outside the factory partitions, no secret anywhere under tmp_path.
    _scan(tmp_path, _secrets_of(records), allowed=[d / "flash.bin" for d in dirs])


def test_force_replaces_a_record(factory, tmp_path):
    first = provision.provision(factory, iterations=ITER, sim=tmp_path / "s")[0]
    second = provision.provision(factory, iterations=ITER, sim=tmp_path / "s", force=True)[0]
    files = flashimage.read_files(tmp_path / "s" / "flash.bin", "fctry")
    assert files == second.files and files != first.files


# --- the CLI -----------------------------------------------------------------------------

def test_cli(factory, tmp_path, monkeypatch, caplog):
    caplog.set_level("DEBUG")
    issued = []
    real = provision.generate_password

    def spy(*a, **kw):
        issued.append(real(*a, **kw))
        return issued[-1]

    monkeypatch.setattr(provision, "generate_password", spy)
    runner = CliRunner()
    cli = iotctl_group  # the commands are in the group from import on
    for args in (["--help"], ["ca", "--help"], ["ca", "init", "--help"], ["provision", "--help"]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 0 and "Usage:" in res.output
    labels = tmp_path / "labels"
    # A non-JSON run prints no password: it goes onto the label only.
    res = runner.invoke(cli, ["provision", "--keys", str(factory), "--count", "2",
                              "--iterations", str(ITER), "--board", "esp32",
                              "--image", str(tmp_path / "img" / "{device_id}.bin"),
                              "--labels", str(labels), "--station", "line-7"])
    assert res.exit_code == 0, res.output
    assert len(issued) == 2 and "2 device(s) provisioned" in res.output
    text = (res.output + res.stderr + caplog.text).encode()
    assert not PW_RE.search(text) and not any(p.encode() in text for p in issued)
    assert len(list(labels.iterdir())) == 4
    # --json: one object per line and device, with the password for the label printer.
    res = runner.invoke(cli, ["provision", "--keys", str(factory), "--count", "3", "--json",
                              "--iterations", str(ITER), "--board", "esp32c3", "--image",
                              str(tmp_path / "img2" / "{device_id}.bin")])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [d["password"] for d in lines] == issued[2:]
    assert all(d["device_id"] and d["setup_url"].startswith("https://") for d in lines)
    # The password has to go somewhere, and exactly one target.
    res = runner.invoke(cli, ["provision", "--keys", str(factory), "--image", "x.bin"])
    assert isinstance(res.exception, UsageError) and "--labels" in str(res.exception)
    res = runner.invoke(cli, ["provision", "--keys", str(factory), "--json"])
    assert isinstance(res.exception, UsageError) and "one target" in str(res.exception)
    assert len(issued) == 5  # the refused runs generated nothing
    res = runner.invoke(cli, ["ca", "init", "--dir", str(factory)])
    assert isinstance(res.exception, KeyFileError)
    images = list((tmp_path / "img").iterdir()) + list((tmp_path / "img2").iterdir())
    needles = [p.encode() for p in issued] + [p.replace("-", "").encode() for p in issued]
    _scan(tmp_path, needles, allowed=images + list(labels.iterdir()))


# --- the label ---------------------------------------------------------------------------

def test_label(factory, tmp_path):
    rec = provision.provision(factory, iterations=ITER, image=tmp_path / "f.bin",
                              labels=tmp_path / "labels")[0]
    png, pdf = Path(rec.labels["png"]), Path(rec.labels["pdf"])
    for p in (png, pdf):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert pdf.read_bytes().startswith(b"%PDF-") and b"/Count 1" in pdf.read_bytes()
    url = f"https://{rec.device_id}.local/setup?id={rec.device_id}"
    assert rec.setup_url == url
    img = Image.open(png).convert("L")
    assert img.size == (label._px(label.WIDTH_MM), label._px(label.HEIGHT_MM))
    # The QR code in the PNG, read module by module, is the code of the setup address.
    matrix = label.qr_matrix(url)
    x0, y0 = label.QR_ORIGIN_PX
    m = label.QR_MODULE_PX
    seen = [[img.getpixel((x0 + c * m + m // 2, y0 + r * m + m // 2)) < 128
             for c in range(len(matrix))] for r in range(len(matrix))]
    assert seen == matrix
    # The second QR code, in the lower half, joins a phone to the set-up access point.
    wifi = label.qr_matrix(label.wifi_qr_text(rec.for_label()))
    x0, y0 = label.WIFI_ORIGIN_PX
    seen = [[img.getpixel((x0 + c * m + m // 2, y0 + r * m + m // 2)) < 128
             for c in range(len(wifi))] for r in range(len(wifi))]
    assert seen == wifi and label.wifi_qr_text(rec.for_label()) == \
        f"WIFI:T:WPA;S:setup-{rec.device_id};P:{rec.ap_passphrase};;"
    assert len(rec.ap_passphrase) == 16 and rec.ap_passphrase not in repr(rec)
    try:
        import zxingcpp
    except ImportError:
        zxingcpp = None
    if zxingcpp is not None:
        texts = [b.text for b in zxingcpp.read_barcodes(Image.open(png))]
        assert sorted(texts) == sorted([url, label.wifi_qr_text(rec.for_label())])
    with pytest.raises(UsageError, match="refusing to overwrite a label"):
        label.write(rec.for_label(), tmp_path / "labels")


# --- the device: PBKDF2, change rules, throttling ----------------------------------------

def test_device_credentials_rules_and_throttling(tmp_path):
    vectors = []
    for pw, salt, n in [("passwd", "salt", 1), ("password", "salt", 2),
                        ("password", "salt", 4096), ("p" * 64, "s" * 16, 3),
                        ("q" * 100, "NaCl", 1000), ("", "salt", 5)]:
        vectors.append({"password": pw, "salt": salt, "iterations": n,
                        "hash": hashlib.pbkdf2_hmac("sha256", pw.encode(), salt.encode(),
                                                    n).hex()})
    # RFC 7914 section 11 gives the first one; make sure the host agrees with the RFC.
    assert vectors[0]["hash"].startswith("55ac046e56e3089fec1691c22544b605")
    work = tmp_path / "dev"
    work.mkdir()
    _run_device("credentials_rules.py", [work, DEVICE_BLOCKLIST], {"vectors": vectors})


def test_host_record_checks_on_device_format():
    doc = provision.hash_password("abcd-efgh-jkmn-pqrs", 1000, salt=b"\x01" * 16)
    assert doc["hash"] == hashlib.pbkdf2_hmac("sha256", b"abcd-efgh-jkmn-pqrs",
                                              b"\x01" * 16, 1000).hex()
    assert provision.check_password(doc, "abcd-efgh-jkmn-pqrs")
    assert not provision.check_password(doc, "abcd-efgh-jkmn-pqrt")
    with pytest.raises(UsageError, match="iterations"):
        provision.make_device(None, {}, iterations=10)
    assert math.isclose(provision.password_bits(), 16 * math.log2(31))
    assert sys.modules["host_tools.provision"].DEFAULT_ITERATIONS == 10_000
