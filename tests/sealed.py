"""Open a record the device sealed (bootloader/sealed.py), on the host with `cryptography`: an
independent reading of the format (AES-256-CBC, HMAC-SHA256 over magic, path, IV and
ciphertext, keys derived from the factory secret), so tests can look inside the raw flash."""

import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MAGIC = b"\xa5S1"


def _derive(secret, label):
    return hmac.new(secret, b"iot-secure-firmware/" + label, hashlib.sha256).digest()


def open_record(secret, path, blob):
    """The plaintext of the sealed record `blob` stored at device path `path`."""
    if blob[:3] != MAGIC:
        raise ValueError("not a sealed record")
    iv, ct, tag = blob[3:19], blob[19:-32], blob[-32:]
    want = hmac.new(_derive(secret, b"seal/mac"), MAGIC + path.encode() + iv + ct,
                    hashlib.sha256).digest()
    if not hmac.compare_digest(want, tag):
        raise ValueError("sealed record fails authentication")
    d = Cipher(algorithms.AES(_derive(secret, b"seal/aes")), modes.CBC(iv)).decryptor()
    pt = d.update(ct) + d.finalize()
    return pt[:-pt[-1]]
