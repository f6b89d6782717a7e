"""Minimal valid ESP app images for tests, built with esptool's own image classes (header,
extended header with the chip id, an esp_app_desc_t, segments, checksum, appended SHA-256),
so that `esptool image-info` and the fake bootloader accept them without a MicroPython build.

    python tests/fakes/appimage.py --chip esp32 --version 1.24.1 --size 65536 -o app.bin
"""

import argparse
import hashlib
import struct

from esptool.bin_image import (ELFSection, ESP32C3FirmwareImage, ESP32FirmwareImage,
                               ESP32S3FirmwareImage)

CLASSES = {"esp32": ESP32FirmwareImage, "esp32s3": ESP32S3FirmwareImage,
           "esp32c3": ESP32C3FirmwareImage}
APP_DESC_MAGIC = 0xABCD5432


def app_desc(version, project="micropython", secure_version=0):
    """An esp_app_desc_t (256 bytes), as ESP-IDF places it at the start of the image's DROM."""
    return struct.pack("<II8s32s32s16s16s32s32s", APP_DESC_MAGIC, secure_version, b"",
                       version.encode(), project.encode(), b"00:00:00", b"Jan  1 2025",
                       b"v5.2.2", bytes(32)).ljust(256, b"\0")


def make_app_image(chip="esp32", version="1.24.1", size=16384, seed=b"", irom=False,
                   secure_version=0):
    """Bytes of a valid app image of about `size` bytes. `irom` adds a code segment in the
    flash-mapped instruction range (the image then grows to the next 64 KiB mapping)."""
    cls = CLASSES[chip]
    rom = cls.ROM_LOADER
    img = cls()
    filler = hashlib.shake_256(b"drom" + seed + version.encode()).digest(max(size - 512, 0))
    img.segments = [ELFSection(b".flash.appdesc", rom.DROM_MAP_START + 0x20,
                               app_desc(version, secure_version=secure_version) + filler, 0)]
    if irom:
        code = hashlib.shake_256(b"irom" + seed).digest(4096)
        img.segments.append(ELFSection(b".flash.text", rom.IROM_MAP_START + 0x10020, code, 0))
    img.entrypoint = rom.IROM_MAP_START + 0x20
    img.append_digest = True
    return img.save(None)


# Where a second-stage bootloader's code is loaded (internal RAM, not flash-mapped).
BOOT_IRAM = {"esp32": 0x40080400, "esp32s3": 0x403CE000, "esp32c3": 0x403CE000}


def make_bootloader_image(chip="esp32", size=0x4000, seed=b""):
    """Bytes of a valid second-stage bootloader image: one RAM segment, no app descriptor."""
    cls = CLASSES[chip]
    img = cls()
    code = hashlib.shake_256(b"boot" + seed).digest(max(size - 64, 16))
    img.segments = [ELFSection(b".iram_loader.text", BOOT_IRAM[chip], code, 0)]
    img.entrypoint = BOOT_IRAM[chip]
    img.append_digest = True
    return img.save(None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chip", choices=sorted(CLASSES), default="esp32")
    ap.add_argument("--version", default="1.24.1")
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--irom", action="store_true")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    with open(args.output, "wb") as f:
        f.write(make_app_image(args.chip, args.version, args.size, irom=args.irom))


if __name__ == "__main__":
    main()
