"""The MicroPython image (docs/glossary.md): the ESP app image `micropython.bin` for a board's
next OTA partition, checked against the board (chip, size), optionally signed for Secure Boot
v2, then wrapped in a signed update bundle of kind `firmware` (docs/FORMAT.md, a "firmware
bundle") holding that one file."""

import json
import struct
import tempfile
from pathlib import Path

from .. import bundle
from .. import keys as keymod
from ..errors import UsageError
from ..mpy import REPO
from .boards import load_board
from .secureboot import sign_image, verify_image

IMAGE_FILE = "micropython.bin"
# esptool's IMAGE_CHIP_ID, in the extended header of every app image.
CHIP_IDS = {"esp32": 0, "esp32s3": 9, "esp32c3": 5}
CHIP_NAMES = {0: "ESP32", 2: "ESP32-S2", 5: "ESP32-C3", 9: "ESP32-S3", 12: "ESP32-C2",
              13: "ESP32-C6", 16: "ESP32-H2"}
APP_DESC_MAGIC = 0xABCD5432
SIG_SECTOR = 4096
SBV2_MAGIC = b"\xE7\x02"  # Secure Boot v2 signature block: magic 0xE7, version 0x02


def default_product():
    try:
        return json.loads((REPO / "firmware" / "manifest.json").read_text())["product"]
    except (OSError, ValueError, KeyError):
        return None


def ota_capacity(board, flash_size=None):
    """The smallest OTA app partition of the board's table: what one image may occupy."""
    cfg = load_board(board, flash_size)
    slots = [p for p in cfg["parts"] if p.type == "app" and p.subtype.startswith("ota_")]
    if len(slots) < 2:
        raise UsageError(f"board {board}: the partition table needs two OTA app partitions")
    return cfg, min(p.size for p in slots)


def check_image(data, board, flash_size=None):
    """Check that `data` is an app image for `board`'s chip that fits its OTA partitions.
    Returns a description; raises UsageError saying exactly what is wrong."""
    from esptool.bin_image import LoadFirmwareImage
    from esptool.util import FatalError

    cfg, capacity = ota_capacity(board, flash_size)
    chip = cfg["chip"]
    if len(data) < 24 or data[0] != 0xE9:
        raise UsageError("not an ESP app image (the first byte must be 0xE9, got "
                         f"{data[0]:#04x})" if data else "the image file is empty")
    try:
        img = LoadFirmwareImage(chip, data)
    except (FatalError, struct.error, ValueError, RuntimeError) as e:
        raise UsageError(f"not a valid ESP app image: {e}") from None
    want = CHIP_IDS[chip]
    if img.chip_id != want:
        got = CHIP_NAMES.get(img.chip_id, f"chip id {img.chip_id}")
        raise UsageError(f"the image is built for {got} (chip id {img.chip_id}); board {board} "
                         f"is an {CHIP_NAMES[want]} (chip id {want})")
    if img.checksum != img.calculate_checksum():
        raise UsageError("the image checksum is wrong (truncated or corrupted image)")
    if img.append_digest and img.stored_digest != img.calc_digest:
        raise UsageError("the image's appended SHA-256 does not match (corrupted image)")
    length = img.data_length + (32 if img.append_digest else 0)
    desc = _app_desc(data)
    if desc is None:
        raise UsageError("the image has no application descriptor: it is not an ESP-IDF app "
                         "(a bootloader or another file?), expected MicroPython's "
                         "micropython.bin")
    if len(data) > capacity:
        raise UsageError(f"the image is {len(data)} bytes; the OTA partitions of {board} "
                         f"hold {capacity} bytes")
    return {"chip": chip, "chip_id": img.chip_id, "length": length, "size": len(data),
            "capacity": capacity, "signed": is_signed(data, length), **desc}


def check_bootloader(data, board, limit):
    """Check that `data` is a second-stage bootloader image for `board`'s chip (an ESP image
    without an application descriptor) that fits the `limit` bytes before the partition
    table. Returns a description; raises UsageError saying exactly what is wrong."""
    from esptool.bin_image import LoadFirmwareImage
    from esptool.util import FatalError

    chip = load_board(board)["chip"]
    if not data:
        raise UsageError("the bootloader image is empty")
    if data[0] != 0xE9:
        raise UsageError(f"the bootloader is not an ESP image (the first byte must be 0xE9, "
                         f"got {data[0]:#04x})")
    if len(data) > limit:
        raise UsageError(f"the bootloader is {len(data)} bytes; it must fit {limit} bytes "
                         "before the partition table")
    try:
        img = LoadFirmwareImage(chip, data)
    except (FatalError, struct.error, ValueError, RuntimeError) as e:
        raise UsageError(f"the bootloader is not a valid ESP image: {e}") from None
    want = CHIP_IDS[chip]
    if img.chip_id != want:
        got = CHIP_NAMES.get(img.chip_id, f"chip id {img.chip_id}")
        raise UsageError(f"the bootloader is built for {got} (chip id {img.chip_id}); board "
                         f"{board} is an {CHIP_NAMES[want]} (chip id {want})")
    if img.checksum != img.calculate_checksum():
        raise UsageError("the bootloader's checksum is wrong (truncated or corrupted image)")
    if img.append_digest and img.stored_digest != img.calc_digest:
        raise UsageError("the bootloader's appended SHA-256 does not match (corrupted image)")
    if _app_desc(data) is not None:
        raise UsageError("the bootloader image is an application (it has an app descriptor): "
                         "give ESP-IDF's bootloader.bin")
    length = img.data_length + (32 if img.append_digest else 0)
    return {"chip": chip, "size": len(data), "signed": is_signed(data, length)}


def _app_desc(data):
    # esp_app_desc_t opens the first segment's data (after the 24-byte header and the
    # 8-byte segment header): magic, secure_version, reserved, version[32], project[32].
    if len(data) < 32 + 80 or struct.unpack_from("<I", data, 32)[0] != APP_DESC_MAGIC:
        return None
    secure_version = struct.unpack_from("<I", data, 36)[0]

    def text(off):
        return data[off:off + 32].split(b"\0", 1)[0].decode("ascii", "replace")

    return {"app_version": text(48), "project": text(80), "secure_version": secure_version}


def is_signed(data, length):
    """True if a Secure Boot v2 signature block follows the image (at its 4 KiB boundary)."""
    at = -(-length // SIG_SECTOR) * SIG_SECTOR
    return len(data) >= at + SIG_SECTOR and data[at:at + 2] == SBV2_MAGIC


def build(image, keys_dir, board, version, security_version, out=None, secure_boot_key=None,
          notes="", security_fix=False, expires=None, product=None, flash_size=None,
          serial=None):
    """Build a signed firmware bundle from a MicroPython app image; returns (bytes, info)."""
    image = Path(image)
    if not image.is_file():
        raise UsageError(f"image {image} not found")
    if out is not None and Path(out).resolve() in {image.resolve()} | (
            {Path(secure_boot_key).resolve()} if secure_boot_key else set()):
        raise UsageError("the output must not overwrite the image or the signing key")
    product = product or default_product()
    if not product:
        raise UsageError("a product name is required (--product)")
    data = image.read_bytes()
    info = check_image(data, board, flash_size)
    if secure_boot_key is not None:
        if info["signed"]:
            raise UsageError(f"{image} already carries a Secure Boot v2 signature")
        data = _sbv2_sign(image, secure_boot_key)
        info = check_image(data, board, flash_size)
        if not info["signed"]:
            raise UsageError("espsecure did not append a Secure Boot v2 signature block")
    if info["secure_version"] and info["secure_version"] != security_version:
        # Built with ESP-IDF anti-rollback: the bootloader compares this field with the eFuse
        # SECURE_VERSION, which confirming the image raises. One floor: they must agree.
        raise UsageError(f"the image's secure_version is {info['secure_version']} (ESP-IDF "
                         f"anti-rollback) but the bundle's security version is "
                         f"{security_version}: they must be the same")
    key, cert, _serial = keymod.current_update_key(keys_dir, serial)
    files = {IMAGE_FILE: data}
    manifest = bundle.make_manifest("firmware", product, [board], version, security_version,
                                    files, notes, security_fix, expires=expires)
    bundle.bind_sbom(manifest, files)
    blob = bundle.assemble(manifest, files, key, cert)
    if out is not None:
        Path(out).write_bytes(blob)
    return blob, {**info, "board": board, "version": version,
                  "security_version": security_version, "bundle_size": len(blob),
                  "key_serial": _serial}


def _sbv2_sign(image, key):
    """The image with a Secure Boot v2 signature block (espsecure), checked with the key."""
    with tempfile.TemporaryDirectory(prefix="iotctl-sbv2-") as tmp:
        signed = Path(tmp) / "signed.bin"
        sign_image(image, key, signed)
        verify_image(signed, key)  # raises VerifyError if the signature does not check
        return signed.read_bytes()

