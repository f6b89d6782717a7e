"""Secure Boot v2 keys and image signatures (espsecure): the signing key, the flash-encryption
key, the public key and its eFuse digest; signing an image and verifying its signature.
Private keys are generated in a private temp directory, made 0600 and linked into place, so
an existing key is never overwritten and never briefly readable."""

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ..errors import KeyFileError, UsageError, VerifyError
from .boards import load_board
from .tools import run_tool, tool_argv

SECTOR = 4096  # the signature sector that ends a signed image
SIG_BLOCKS = 3  # signature blocks it may hold

KEY_FILES = {
    "signing_key": "secure_boot_signing_key.pem",
    "public_key": "secure_boot_signing_key.pub.pem",
    "digest": "secure_boot_key_digest.bin",
    "fe_key": "flash_encryption_key.bin",
}


def key_paths(keys_dir):
    return {k: str(Path(keys_dir) / v) for k, v in KEY_FILES.items()}


def _new_private(path, make):
    path = Path(path)
    if path.exists():
        raise KeyFileError(f"{path} exists; refusing to overwrite a key")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmpdir = tempfile.mkdtemp(dir=path.parent, prefix=".keygen-")
    try:
        tmp = Path(tmpdir) / path.name
        run_tool(make(tmp))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # fails if a key appeared meanwhile: never overwrite
        except FileExistsError:
            raise KeyFileError(f"{path} exists; refusing to overwrite a key") from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return str(path)


def generate_signing_key(path, scheme="rsa3072"):
    """A new Secure Boot v2 signing key (PEM, 0600); refuses to overwrite."""
    return _new_private(path, lambda tmp: tool_argv(
        "espsecure", "generate-signing-key", "--version", "2", "--scheme", scheme, tmp))


def generate_flash_encryption_key(path, bits=256):
    """A new random flash-encryption key (raw, 0600); refuses to overwrite."""
    return _new_private(path, lambda tmp: tool_argv(
        "espsecure", "generate-flash-encryption-key", "--keylen", bits, tmp))


def key_digest(key, out):
    """SHA-256 digest of the SBv2 public key (what the eFuse holds); returns the bytes."""
    if not Path(key).is_file():
        raise KeyFileError(f"signing key {key} not found")
    run_tool(tool_argv("espsecure", "digest-sbv2-public-key", "--keyfile", key, "--output", out))
    return Path(out).read_bytes()


def prepare_keys(chip, keys_dir, generate=True):
    """The key files for `chip`: the signing key and FE key (generated when missing and
    `generate`), the public key and the key digest (derived, rewritten every time)."""
    board = load_board(chip)
    paths = key_paths(keys_dir)
    for name, make in (("signing_key", lambda p: generate_signing_key(
                            p, board["secure_boot"]["scheme"])),
                       ("fe_key", lambda p: generate_flash_encryption_key(
                            p, board["flash_encryption"]["key_bits"]))):
        if not Path(paths[name]).is_file():
            if not generate:
                raise KeyFileError(
                    f"{paths[name]} not found. On a real chip the keys must be the ones the "
                    f"flashed images were signed and encrypted with: create them with "
                    f"`iotctl secure-boot keys`, then sign and flash (flash --encrypt-key)")
            make(paths[name])
    run_tool(tool_argv("espsecure", "extract-public-key", "--version", "2",
                       "--keyfile", paths["signing_key"], paths["public_key"]))
    key_digest(paths["signing_key"], paths["digest"])
    return paths


# ---------------------------------------------------------------------------------------
# Signing and verifying images (Secure Boot v2 signature blocks)


def sign_image(image, key, out):
    """Append a Secure Boot v2 signature block to `image` (padded to 4 KiB) into `out`."""
    if not Path(image).is_file():
        raise UsageError(f"image {image} not found")
    if not Path(key).is_file():
        raise KeyFileError(f"signing key {key} not found")
    if Path(out).resolve() == Path(image).resolve():
        raise UsageError("output must not be the input image")
    run_tool(tool_argv("espsecure", "sign-data", "--version", "2", "--keyfile", key,
                       "--output", out, image))
    return str(out)


def _load_key(path):
    """The public key of a PEM file holding a private or a public key."""
    data = Path(path).read_bytes()
    for load in (lambda d: serialization.load_pem_private_key(d, None).public_key(),
                 serialization.load_pem_public_key):
        try:
            return load(data)
        except (ValueError, TypeError):
            continue
    raise KeyFileError(f"{path} is not a PEM private or public key")


def verify_image(image, key):
    """Check an image's SBv2 signature against `key` (private or public PEM). Returns "OK";
    raises VerifyError with NOT_SIGNED, INVALID_HASH, KEY_MISMATCH or INVALID_SIGNATURE.

    espsecure's own functions decide: `validate_signature_block` finds the signature blocks
    (magic, version, CRC), `verify_signature_v2` checks digest and signature; the verdict is
    named from which check fails, not from the tool's messages."""
    import espsecure
    from esptool.util import FatalError

    if not Path(key).is_file():
        raise KeyFileError(f"verification key {key} not found")
    if not Path(image).is_file():
        raise UsageError(f"image {image} not found")
    public = _load_key(key)
    data = Path(image).read_bytes()
    if len(data) < SECTOR or len(data) % SECTOR:
        raise VerifyError("NOT_SIGNED", "no Secure Boot v2 signature sector")
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        blocks = [b for n in range(SIG_BLOCKS)
                  if (b := espsecure.validate_signature_block(data, n)) is not None]
    if not blocks:
        raise VerifyError("INVALID_SIGNATURE", "no valid signature block in the last sector")
    for block in blocks:  # the image digest each block signs (SHA-256; SHA-384 for ECDSA-384)
        sha384 = block[1] == espsecure.SIG_BLOCK_VERSION_ECDSA and \
            block[2] == espsecure.ECDSA_SHA_384
        digest = hashlib.new("sha384" if sha384 else "sha256", data[:-SECTOR]).digest()
        if block[4:4 + len(digest)] != digest:
            raise VerifyError("INVALID_HASH", "image bytes differ from the signed digest")
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            espsecure.verify_signature_v2(False, None, io.BytesIO(pem), io.BytesIO(data))
    except FatalError:  # every block has the right digest, none verifies with this key
        raise VerifyError("KEY_MISMATCH", "signed, but not by this key") from None
    return "OK"
