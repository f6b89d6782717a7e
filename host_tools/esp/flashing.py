"""Flashing an ESP32 board with esptool: bootloader, partition table, blank otadata and marks, the
MicroPython image (ota_0), factory data (fctry) and the data filesystem (vfs), written to the
chip or merged into one production image; images encrypted on the host with espsecure."""

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KeyFileError, UsageError
from . import partitions
from .boards import load_board, size_name
from .tools import run_tool, tool_argv


@dataclass
class Image:
    name: str
    offset: int
    path: str


@dataclass
class FlashJob:
    chip: str
    argv: list                                 # the esptool command (write-flash / merge-bin)
    images: list                               # Images in flash order
    prepare: list = field(default_factory=list)  # espsecure commands run first (encryption)
    output: str = None                         # merged image path, with --merge
    workdir: str = None                        # generated files (kept for dry runs)
    ran: bool = False
    checked: dict = field(default_factory=dict)  # image name -> what check_images found

    def commands(self):
        return [*self.prepare, self.argv]


ALWAYS_ENCRYPTED = ("bootloader", "partition-table", "otadata", "ota_0")


def _stage(src, offset, name, limit):
    path = Path(src)
    if not path.is_file():
        raise UsageError(f"{name} image {src} not found")
    size = path.stat().st_size
    if size == 0 or size > limit:
        raise UsageError(f"{name} image {src} is {size} bytes; it must fit {limit} bytes")
    return Image(name, offset, str(path))


BEFORE = ("default-reset", "usb-reset", "no-reset", "no-reset-no-sync")
AFTER = ("hard-reset", "soft-reset", "no-reset", "no-reset-stub", "watchdog-reset")
DEFAULT_BAUD = 460800


def check_images(board, images, flash_size=None):
    """Refuse what the board could not boot, before anything is written: the firmware must be
    an app image for the board's chip that fits ota_0 (what `iotctl sign` checks), the
    bootloader a bootloader image for the chip; the generated partition table must parse
    back to the board's. Returns {name: description}."""
    from . import micropython_image

    found = {}
    for im in images:
        raw = Path(im.path).read_bytes()
        if im.name == "ota_0":
            found[im.name] = micropython_image.check_image(raw, board, flash_size)
        elif im.name == "bootloader":
            found[im.name] = micropython_image.check_bootloader(raw, board, len(raw))
        elif im.name == "partition-table":
            table = partitions.parse_partition_table_bin(raw)
            want = load_board(board, flash_size)["parts"]
            if [(p.name, p.offset, p.size) for p in table] != \
                    [(p.name, p.offset, p.size) for p in want]:
                raise UsageError("the generated partition table does not read back as the "
                                 "board's")
            found[im.name] = {"partitions": len(table)}
    return found


def plan_flash(board, firmware, *, factory=None, data=None, bootloader=None, port=None,
               merge_out=None, flash_size=None, encrypt_key=None, workdir, baud=DEFAULT_BAUD,
               before="default-reset", after="hard-reset"):
    """Build (without running) the esptool command for `board`; writes the generated
    partition table and blank otadata into `workdir`. Every image is checked first
    (check_images); `baud`, `before` and `after` go to esptool as they are."""
    if before not in BEFORE or after not in AFTER:
        raise UsageError(f"--before must be one of {', '.join(BEFORE)}; --after one of "
                         f"{', '.join(AFTER)}")
    if merge_out is not None and bootloader is None:
        raise UsageError("--merge writes a production image, which needs --bootloader "
                         "(the second-stage bootloader at the start of flash)")
    cfg = load_board(board, flash_size)
    chip, parts, work = cfg["chip"], cfg["parts"], Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    table_at = cfg["partition_table_offset"]
    if table_at != partitions.TABLE_OFFSET:
        raise UsageError(f"board {board}: partition table must be at {partitions.TABLE_OFFSET:#x}")
    images = []
    if bootloader:
        images.append(_stage(bootloader, cfg["bootloader_offset"], "bootloader",
                             table_at - cfg["bootloader_offset"]))
    table = work / "partition-table.bin"
    table.write_bytes(partitions.partition_table_bin(parts))
    images.append(Image("partition-table", table_at, str(table)))
    otadata = partitions.find(parts, "otadata")
    blank = work / "ota_data_initial.bin"
    blank.write_bytes(b"\xFF" * otadata.size)  # erased otadata: the bootloader starts ota_0
    images.append(Image("otadata", otadata.offset, str(blank)))
    marks = next((p for p in parts if p.name == "marks"), None)
    if marks is not None:  # erased: no owner mark (bootloader/marks.py), whatever was there
        unmarked = work / "marks_initial.bin"
        unmarked.write_bytes(b"\xFF" * marks.size)
        images.append(Image("marks", marks.offset, str(unmarked)))
    for name, src in (("ota_0", firmware), (cfg["factory_partition"], factory),
                      (cfg["data_partition"], data)):
        if src is not None:
            part = partitions.find(parts, name)
            images.append(_stage(src, part.offset, name, part.size))
    images.sort(key=lambda im: im.offset)
    checked = check_images(board, images, flash_size)

    prepare = []
    if encrypt_key is not None:
        if not Path(encrypt_key).is_file():
            raise KeyFileError(f"flash encryption key {encrypt_key} not found")
        flagged = {p.name for p in parts if "encrypted" in p.flags.split(":")}
        for im in images:
            if im.name in ALWAYS_ENCRYPTED or im.name in flagged:
                padded = work / f"{im.name}.plain.bin"
                raw = Path(im.path).read_bytes()
                padded.write_bytes(raw + b"\xFF" * (-len(raw) % 32))  # AES block multiple
                enc = work / f"{im.name}.enc.bin"
                prepare.append(tool_argv("espsecure", "encrypt-flash-data",
                                         *(["--aes-xts"] if chip != "esp32" else []),
                                         "--keyfile", encrypt_key, "--address", hex(im.offset),
                                         "--output", enc, padded))
                im.path = str(enc)

    keep = ["--flash-mode", "keep", "--flash-freq", "keep", "--flash-size", "keep"]
    pairs = [a for im in images for a in (hex(im.offset), im.path)]
    if merge_out is not None:
        argv = tool_argv("esptool", "--chip", chip, "merge-bin", "--output", merge_out,
                         "--format", "raw", "--pad-to-size", size_name(cfg["flash_size"]),
                         *keep, *pairs)
    else:
        conn = ["--port", port] if port else []
        argv = tool_argv("esptool", "--chip", chip, *conn, "--baud", baud,
                         "--before", before, "--after", after, "write-flash", *keep, *pairs)
    return FlashJob(chip, argv, images, prepare, str(merge_out) if merge_out else None,
                    str(work), checked=checked)


def flash(board, firmware, *, factory=None, data=None, bootloader=None, port=None,
          merge_out=None, flash_size=None, encrypt_key=None, dry_run=False, workdir=None,
          stream=None, baud=DEFAULT_BAUD, before="default-reset", after="hard-reset",
          timeout=None):
    """Flash a board (or, with `merge_out`, write one production image). Returns the
    FlashJob with the exact argv; with `dry_run` nothing runs and `workdir` is kept."""
    if merge_out is not None and Path(merge_out).resolve() in {
            Path(p).resolve() for p in (firmware, factory, data, bootloader) if p}:
        raise UsageError("the merged image would overwrite one of its inputs")
    own_dir = workdir is None
    work = tempfile.mkdtemp(prefix="iotctl-flash-") if own_dir else workdir
    keep_work = False
    # a merged image is written beside its place and renamed when whole: an error or an
    # interrupt leaves no half-made "production image"
    part = None if merge_out is None or dry_run else Path(f"{merge_out}.part")
    try:
        job = plan_flash(board, firmware, factory=factory, data=data, bootloader=bootloader,
                         port=port, merge_out=part or merge_out, flash_size=flash_size,
                         encrypt_key=encrypt_key, workdir=work, baud=baud, before=before,
                         after=after)
        if dry_run:
            keep_work = True  # the printed command refers to the generated files
            return job
        for argv in job.prepare:
            run_tool(argv, timeout=timeout)
        run_tool(job.argv, stream=stream or _echo, timeout=timeout)
        if part is not None:
            os.replace(part, merge_out)
            job.output = str(merge_out)
        job.ran = True
        if own_dir:
            job.workdir = None
        return job
    finally:
        if part is not None:
            part.unlink(missing_ok=True)
        if own_dir and not keep_work:
            shutil.rmtree(work, ignore_errors=True)


def _echo(text):
    sys.stdout.write(text)
    sys.stdout.flush()
