"""Keys: root and update keys, certificates, refusal to overwrite, file modes."""

import json
import stat

import pytest

from host_tools import keys
from host_tools.errors import KeyFileError, UsageError


@pytest.mark.parametrize("alg", ["ed25519", "ecdsa-p256"])
def test_init_creates_root_update_key_and_cert(tmp_path, alg):
    d = tmp_path / "k"
    assert keys.init(d, alg) == 1
    for name in ("root.key", "update-0001.key"):
        mode = stat.S_IMODE((d / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"
    info = json.loads((d / "keys.json").read_text())
    assert info["serial"] == 1 and info["root_alg"] == alg
    cert = keys.parse_cert((d / "update-0001.cert").read_bytes())
    assert cert.serial == 1 and cert.key_alg == alg
    root_pub = bytes.fromhex(info["root_public"])
    assert cert.root_id == keys.root_id(root_pub)
    assert keys.verify(keys.ALGS[alg], root_pub, cert.signed, cert.signature)
    upd, cert_bytes, serial = keys.current_update_key(d)
    assert keys.raw_public(upd) == cert.key and serial == 1


def test_init_refuses_to_overwrite(tmp_path):
    d = tmp_path / "k"
    keys.init(d)
    before = (d / "root.key").read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        keys.init(d)
    assert (d / "root.key").read_bytes() == before


def test_rotate_increments_serial_and_keeps_old_keys(tmp_path):
    d = tmp_path / "k"
    keys.init(d)
    first = (d / "update-0001.key").read_bytes()
    assert keys.rotate(d) == 2
    assert keys.rotate(d) == 3
    assert (d / "update-0001.key").read_bytes() == first
    _key, cert, serial = keys.current_update_key(d)
    assert serial == 3 and keys.parse_cert(cert).serial == 3
    assert stat.S_IMODE((d / "update-0003.key").stat().st_mode) == 0o600


def test_rotate_without_keys_is_a_clear_error(tmp_path):
    with pytest.raises(KeyFileError, match="holds no keys"):
        keys.rotate(tmp_path)


def test_unknown_algorithm(tmp_path):
    with pytest.raises(UsageError, match="unknown algorithm"):
        keys.init(tmp_path / "k", "rsa")


def test_cert_tampering_breaks_root_signature(tmp_path):
    d = tmp_path / "k"
    keys.init(d)
    raw = bytearray((d / "update-0001.cert").read_bytes())
    root_pub = bytes.fromhex(keys.load_info(d)["root_public"])
    raw[8] ^= 1  # serial
    cert = keys.parse_cert(bytes(raw))
    assert not keys.verify(1, root_pub, cert.signed, cert.signature)
    with pytest.raises(KeyFileError):
        keys.parse_cert(bytes(raw[:-1]))
