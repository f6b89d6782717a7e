"""Owner onboarding on the ESP32 boards' HAL (boards/common/esp32hal.py exposes its radio as
`hal.network`), run on the unix port with the fake `machine` and `network` of tests/fakes:
console-written Wi-Fi settings are sealed and the plaintext removed, the station connects
without an access point; a new device opens the WPA2 set-up AP (label passphrase, one client)
for its window only; with settings, only the button held 3 s opens it."""

import datetime
import socket

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from host_tools import mpy

from .test_boards import BOARDS, REPO, device_path

SCRIPT = REPO / "tests" / "device" / "board_onboarding.py"


def _cert(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "th-4k9q2x7mzp3a")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    crt, der = tmp_path / "c.der", tmp_path / "k.der"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    der.write_bytes(key.private_bytes(serialization.Encoding.DER,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, der


@pytest.mark.parametrize("board", BOARDS[:1])  # one HAL class for all three boards
def test_onboarding_on_the_esp32_hal(board, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    crt, key = _cert(tmp_path)
    work = tmp_path / "w"
    work.mkdir()
    proc = mpy.run(SCRIPT, [REPO / "boards" / board / "board.json", work, port, crt, key],
                   extra_path=device_path(board) + [REPO / "firmware"])
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1:] == ["OK"], \
        proc.stdout[-2000:] + proc.stderr
