"""Partition tables (ESP-IDF CSV layout): parse, validate, and look up by name."""

import csv
import io
from dataclasses import dataclass

from .errors import UsageError

FLASH_SECTOR = 0x1000
APP_ALIGN = 0x10000
TABLE_OFFSET = 0x8000  # where the bootloader expects the partition table
TABLE_SIZE = 0x1000

TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES = {
    "app": {"factory": 0x00, "test": 0x20, **{f"ota_{i}": 0x10 + i for i in range(16)}},
    "data": {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04,
             "efuse": 0x05, "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81,
             "spiffs": 0x82, "littlefs": 0x83},
}


@dataclass(frozen=True)
class Partition:
    name: str
    type: str
    subtype: str
    offset: int
    size: int
    flags: str = ""

    @property
    def end(self):
        return self.offset + self.size


def _int(text, what, line):
    text = text.strip()
    try:
        mult = 1
        if text[-1:] in ("K", "k"):
            mult, text = 1024, text[:-1]
        elif text[-1:] in ("M", "m"):
            mult, text = 1024 * 1024, text[:-1]
        return int(text, 0) * mult
    except ValueError:
        raise UsageError(f"partition table line {line}: {what} {text!r} is not a number") from None


def parse(text):
    """Parse CSV text into a list of Partitions; every row needs an explicit offset."""
    parts = []
    for line, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or row[0].strip().startswith("#") or not "".join(row).strip():
            continue
        row = [c.strip() for c in row] + [""] * (6 - len(row))
        name, ptype, subtype, offset, size, flags = row[:6]
        if ptype not in TYPES:
            raise UsageError(f"partition table line {line}: unknown type {ptype!r}")
        if subtype not in SUBTYPES[ptype]:
            try:
                int(subtype, 0)
            except ValueError:
                raise UsageError(
                    f"partition table line {line}: unknown subtype {subtype!r}") from None
        if not offset:
            raise UsageError(f"partition table line {line}: {name} needs an explicit offset")
        parts.append(Partition(name, ptype, subtype, _int(offset, "offset", line),
                               _int(size, "size", line), flags))
    return parts


def load(path):
    with open(path, encoding="utf-8") as f:
        return parse(f.read())


def validate(parts, flash_size):
    """Raise UsageError unless the table is well formed for a flash of `flash_size` bytes."""
    names = set()
    prev = None
    for p in sorted(parts, key=lambda p: p.offset):
        if p.name in names:
            raise UsageError(f"duplicate partition name {p.name!r}")
        names.add(p.name)
        if len(p.name) > 16:
            raise UsageError(f"partition name {p.name!r} is longer than 16 characters")
        if p.size <= 0:
            raise UsageError(f"partition {p.name} has no size")
        if p.offset < TABLE_OFFSET + TABLE_SIZE:
            raise UsageError(f"partition {p.name} overlaps the bootloader or partition table")
        align = APP_ALIGN if p.type == "app" else FLASH_SECTOR
        if p.offset % align:
            raise UsageError(f"partition {p.name} at {p.offset:#x} is not aligned to {align:#x}")
        if p.size % FLASH_SECTOR:
            raise UsageError(f"partition {p.name} size {p.size:#x} is not a whole number of sectors")
        if prev and p.offset < prev.end:
            raise UsageError(f"partition {p.name} overlaps {prev.name}")
        if p.end > flash_size:
            raise UsageError(
                f"partition {p.name} ends at {p.end:#x}, past the {flash_size:#x}-byte flash")
        prev = p
    return parts


def find(parts, name):
    for p in parts:
        if p.name == name:
            return p
    raise UsageError(f"no partition named {name!r}")
