"""TLS of the device (bootloader/tlsctx.py): the local API offers only ECDHE with AEAD
suites and sends its chain up to the manufacturer CA (checked with Python's ssl, openssl and
Debian's testssl.sh); the device's client context (cloud link, update download, alert)
refuses a server that offers CBC only."""

import json
import socket
import ssl
import subprocess
import threading

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from host_tools import mpy, push, sim
from host_tools.cloud import updateserver

DEVICE = mpy.REPO / "tests" / "device"
CBC = "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA:" \
      "ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384"


def _handshake(host, port, ciphers, cafile, name):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # set_ciphers governs TLS 1.2 suites
    ctx.set_ciphers(ciphers)
    with socket.create_connection((host, port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=name) as t:
            return t.cipher()


def test_api_offers_only_aead_suites_and_the_whole_chain(app_device, keydir):
    d, _, info = app_device
    host, port = push.parse_device(sim.https_address(d))
    cafile, name = str(keydir / "ca.crt"), info["device_id"]
    suite, version, _ = _handshake(host, port, "ALL", cafile, name)
    assert version == "TLSv1.2" and ("GCM" in suite or "CHACHA20" in suite), suite
    assert suite.startswith("ECDHE-"), suite
    for cbc in CBC.split(":"):  # a client that offers nothing else gets no connection
        try:
            got = _handshake(host, port, cbc, cafile, name)
        except ssl.SSLError as e:
            assert "HANDSHAKE_FAILURE" in str(e).upper() or "NO_CIPHERS" in str(e).upper(), e
        else:
            raise AssertionError(f"{cbc} accepted: {got}")
    # The chain: openssl lists what the server sent, leaf first, then the CA.
    out = subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}", "-showcerts",
                          "-servername", name], input=b"", capture_output=True, timeout=30).stdout
    pems = [b"-----BEGIN CERTIFICATE-----" + p.split(b"-----END CERTIFICATE-----")[0] +
            b"-----END CERTIFICATE-----\n" for p in out.split(b"-----BEGIN CERTIFICATE-----")[1:]]
    certs = [x509.load_pem_x509_certificate(p) for p in pems]
    ca = x509.load_pem_x509_certificate((keydir / "ca.crt").read_bytes())
    assert len(certs) == 2, out.decode(errors="replace")[-2000:]
    assert certs[0].subject.rfc4514_string().startswith("CN=" + name + ",")
    assert certs[1].public_bytes(serialization.Encoding.DER) == \
        ca.public_bytes(serialization.Encoding.DER)


def test_testssl_finds_no_cbc_and_a_complete_chain(app_device, keydir, tmp_path):
    """Debian's testssl.sh 3.x (protocols, cipher categories, server defaults): ~25 s."""
    d, _, _ = app_device
    report = tmp_path / "testssl.json"
    proc = subprocess.run(["testssl", "--quiet", "--color", "0", "--warnings", "off", "-p",
                           "-s", "-S", "--add-ca", str(keydir / "ca.crt"), "--jsonfile",
                           str(report), sim.https_address(d)],
                          capture_output=True, text=True, timeout=120)
    found = {f["id"]: f["finding"] for f in json.loads(report.read_text())}
    assert found.get("scanTime"), proc.stdout[-3000:] + proc.stderr[-2000:]
    for weak in ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
                 "cipherlist_3DES_IDEA", "cipherlist_AVERAGE", "SSLv2", "SSLv3", "TLS1",
                 "TLS1_1"):
        assert found[weak].startswith("not offered"), (weak, found[weak])
    assert found["cipherlist_STRONG"] == "offered"  # AEAD
    assert found["certs_countServer"] == "2" and found["cert_chain_of_trust"] == "passed."
    assert found["certs_list_ordering_problem"] == "no"


def _server(keydir, ciphers):
    crt, key = updateserver.server_credentials(keydir, "tls-test", ("127.0.0.1",))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    ctx.load_cert_chain(crt, key)
    lsock = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = lsock.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as t:
                t.sendall(t.recv(4))
        except (OSError, ssl.SSLError):
            pass
        lsock.close()
    threading.Thread(target=serve, daemon=True).start()
    return lsock.getsockname()[1]


def test_device_client_context_takes_aead_only(keydir, tmp_path):
    ca_der = tmp_path / "ca.der"
    ca = x509.load_pem_x509_certificate((keydir / "ca.crt").read_bytes())
    ca_der.write_bytes(ca.public_bytes(serialization.Encoding.DER))
    for ciphers, ok in (("ECDHE-ECDSA-AES128-GCM-SHA256", True), (CBC, False)):
        port = _server(keydir, ciphers)
        proc = mpy.run(DEVICE / "tls_client.py", [port, "127.0.0.1", ca_der], timeout=60)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        if ok:
            assert out == {"cipher": ["TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256", "TLSv1.2"],
                           "read": "ping"}, out
        else:
            assert "error" in out, out
