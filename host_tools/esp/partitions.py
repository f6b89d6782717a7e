"""Partition tables: the ESP-IDF CSV layout (parse, validate, look up by name) and the binary
table the bootloader reads at 0x8000 (write and parse back)."""

import csv
import hashlib
import io
import struct
from dataclasses import dataclass

from ..errors import UsageError

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
            raise UsageError(f"partition {p.name} size {p.size:#x} is not a whole number of "
                             "sectors")
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


# ---------------------------------------------------------------------------------------
# Binary partition table (the format ESP-IDF's gen_esp32part.py writes and the
# bootloader reads at 0x8000): 32-byte entries <magic AA 50, type, subtype, offset, size,
# name[16], flags>, then an MD5 row (EB EB, 14 x FF, MD5 of the entries), then 0xFF.

ENTRY = struct.Struct("<2sBBII16sI")
ENTRY_MAGIC = b"\xAA\x50"
MD5_MAGIC = b"\xEB\xEB" + b"\xFF" * 14
TABLE_MAX = 0xC00  # entries + MD5 row; the rest of the 4 KiB sector stays 0xFF
FLAG_BITS = {"encrypted": 0, "readonly": 1}


def _type_ids(part):
    ptype = TYPES[part.type]
    sub = SUBTYPES[part.type].get(part.subtype)
    return ptype, int(part.subtype, 0) if sub is None else sub


def _flags(part):
    bits = 0
    for flag in filter(None, (f.strip() for f in part.flags.split(":"))):
        if flag not in FLAG_BITS:
            raise UsageError(f"partition {part.name}: unknown flag {flag!r}")
        bits |= 1 << FLAG_BITS[flag]
    return bits


def partition_table_bin(parts):
    """The binary partition table for `parts`, padded with 0xFF to TABLE_MAX bytes."""
    rows = bytearray()
    for p in parts:
        ptype, subtype = _type_ids(p)
        rows += ENTRY.pack(ENTRY_MAGIC, ptype, subtype, p.offset, p.size,
                           p.name.encode("ascii"), _flags(p))
    rows += MD5_MAGIC + hashlib.md5(rows).digest()
    if len(rows) >= TABLE_MAX:  # leave room for the 0xFF end marker
        raise UsageError(f"partition table has too many entries ({len(parts)})")
    return bytes(rows) + b"\xFF" * (TABLE_MAX - len(rows))


def parse_partition_table_bin(data):
    """Parse a binary table back into Partitions; checks magic, MD5 and the end marker."""
    names = {v: k for k, v in TYPES.items()}
    md5 = hashlib.md5()
    parts, seen_md5 = [], False
    for pos in range(0, len(data) - ENTRY.size + 1, ENTRY.size):
        row = data[pos:pos + ENTRY.size]
        if row == b"\xFF" * ENTRY.size:
            if not seen_md5:
                raise UsageError("partition table has no MD5 row")
            return parts
        if row[:2] == MD5_MAGIC[:2]:
            if row[16:] != md5.digest():
                raise UsageError("partition table MD5 does not match its entries")
            seen_md5 = True
            continue
        magic, ptype, subtype, offset, size, name, flags = ENTRY.unpack(row)
        if magic != ENTRY_MAGIC or ptype not in names:
            raise UsageError(f"bad partition entry at byte {pos}")
        md5.update(row)
        tname = names[ptype]
        sname = {v: k for k, v in SUBTYPES[tname].items()}.get(subtype, f"{subtype:#x}")
        flag_names = ":".join(k for k, bit in FLAG_BITS.items() if flags >> bit & 1)
        parts.append(Partition(name.rstrip(b"\0").decode("ascii"), tname, sname,
                                          offset, size, flag_names))
    raise UsageError("partition table has no end marker")
