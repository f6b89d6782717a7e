"""ESP32 boards: binary partition tables, esptool flash and merge commands, Secure Boot v2
and flash-encryption keys (espsecure), and the planned, confirmed eFuse burns (espefuse)."""

import collections
import hashlib
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import partitions
from .errors import DeviceError, KeyError_, ToolError, Unreachable, UsageError, VerifyError

REPO = Path(__file__).resolve().parent.parent
BOARDS_DIR = REPO / "boards"
CHIPS = ("esp32", "esp32s3", "esp32c3")

# ---------------------------------------------------------------------------------------
# Boards


def load_board(board, flash_size=None):
    """board.json of an ESP32 board, with the variant for `flash_size` ("8MB" or bytes)
    merged in, plus `dir` and the validated partition table as `parts`."""
    path = BOARDS_DIR / board / "board.json"
    if not path.is_file():
        raise UsageError(f"unknown board {board!r}: no {path}")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("chip") not in CHIPS:
        raise UsageError(f"board {board!r} is not an ESP32 board (chip {cfg.get('chip')!r})")
    if flash_size is not None:
        want = parse_size(flash_size)
        if want != cfg["flash_size"]:
            variant = cfg.get("variants", {}).get(size_name(want))
            if variant is None:
                sizes = [size_name(cfg["flash_size"]), *cfg.get("variants", {})]
                raise UsageError(f"board {board} has no {size_name(want)} variant "
                                 f"(choose from {', '.join(sizes)})")
            cfg = {**cfg, **variant}
    cfg["dir"] = path.parent
    cfg["parts"] = partitions.validate(partitions.load(path.parent / cfg["partition_table"]),
                                       cfg["flash_size"])
    return cfg


def parse_size(value):
    """"4MB" / "8MB" / 4194304 -> bytes."""
    if isinstance(value, int):
        return value
    text = str(value).strip().upper()
    try:
        if text.endswith("MB"):
            return int(text[:-2]) << 20
        if text.endswith("KB"):
            return int(text[:-2]) << 10
        return int(text, 0)
    except ValueError:
        raise UsageError(f"flash size {value!r} is not a size like 4MB") from None


def size_name(size):
    """Bytes -> esptool's spelling ("4MB")."""
    return f"{size >> 20}MB" if size % (1 << 20) == 0 else f"{size >> 10}KB"


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
    ptype = partitions.TYPES[part.type]
    sub = partitions.SUBTYPES[part.type].get(part.subtype)
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
    names = {v: k for k, v in partitions.TYPES.items()}
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
        sname = {v: k for k, v in partitions.SUBTYPES[tname].items()}.get(subtype, f"{subtype:#x}")
        flag_names = ":".join(k for k, bit in FLAG_BITS.items() if flags >> bit & 1)
        parts.append(partitions.Partition(name.rstrip(b"\0").decode("ascii"), tname, sname,
                                          offset, size, flag_names))
    raise UsageError("partition table has no end marker")


# ---------------------------------------------------------------------------------------
# Running esptool / espsecure / espefuse


def tool_argv(tool, *args):
    """argv that runs `tool` (esptool, espsecure, espefuse) from this Python environment."""
    return [sys.executable, "-m", tool, *map(str, args)]


def format_argv(argv):
    return shlex.join(str(a) for a in argv)


def _tool_message(output):
    """The tool's own error message: the 'fatal error' line, else the last lines it printed."""
    lines = [ln.strip(" │╭╮╰╯─\t") for ln in output.splitlines()]
    lines = [ln for ln in lines if ln]
    for i, line in enumerate(lines):
        if "A fatal error occurred:" in line:
            return " ".join(lines[i:i + 3]).split("A fatal error occurred:", 1)[1].strip()
    return " / ".join(lines[-3:]) if lines else "no output"


def run_tool(argv, stream=None, timeout=None):
    """Run a tool; return its output. Non-zero exit -> ToolError with the tool's message.
    With `stream` (a callable taking text), output is passed through live (progress).
    With `timeout` (seconds), a tool still running then is stopped: Unreachable."""
    import threading

    name = argv[2] if len(argv) > 2 and argv[1] == "-m" else Path(argv[0]).name
    # streamed output is only kept for the error message; otherwise all of it is returned
    tail = collections.deque(maxlen=64 if stream is not None else None)
    timed_out = threading.Event()
    try:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL) as proc:
            def expire():
                timed_out.set()
                proc.kill()

            timer = threading.Timer(timeout, expire) if timeout else None
            if timer:
                timer.start()
            try:
                while chunk := proc.stdout.read1(4096):
                    text = chunk.decode(errors="replace")
                    tail.append(text)
                    if stream is not None:
                        stream(text)
                proc.wait()
            except BaseException:  # Ctrl-C or SIGTERM: the tool does not outlive us
                proc.kill()
                raise
            finally:
                if timer:
                    timer.cancel()
        output, rc = "".join(tail), proc.returncode
    except OSError as exc:
        raise ToolError(f"cannot run {name}: {exc}") from None
    if timed_out.is_set():
        raise Unreachable(f"{name} did not finish within {timeout:g} s (stopped): "
                          f"{_tool_message(output)}")
    if rc != 0:
        raise ToolError(f"{name} failed (exit {rc}): {_tool_message(output)}")
    return output


# ---------------------------------------------------------------------------------------
# Flashing: bootloader, partition table, blank otadata, firmware (ota_0), factory data
# (fctry) and the data filesystem (vfs), written by esptool or merged into one image.


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
    from . import firmware as fw

    found = {}
    for im in images:
        raw = Path(im.path).read_bytes()
        if im.name == "ota_0":
            found[im.name] = fw.check_image(raw, board, flash_size)
        elif im.name == "bootloader":
            found[im.name] = fw.check_bootloader(raw, board, len(raw))
        elif im.name == "partition-table":
            table = parse_partition_table_bin(raw)
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
    table.write_bytes(partition_table_bin(parts))
    images.append(Image("partition-table", table_at, str(table)))
    otadata = partitions.find(parts, "otadata")
    blank = work / "ota_data_initial.bin"
    blank.write_bytes(b"\xFF" * otadata.size)  # erased otadata: the bootloader starts ota_0
    images.append(Image("otadata", otadata.offset, str(blank)))
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
            raise KeyError_(f"flash encryption key {encrypt_key} not found")
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


# ---------------------------------------------------------------------------------------
# Keys (espsecure). Private keys: generated in a private temp directory, made 0600 and
# linked into place, so an existing key is never overwritten and never briefly readable.

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
        raise KeyError_(f"{path} exists; refusing to overwrite a key")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmpdir = tempfile.mkdtemp(dir=path.parent, prefix=".keygen-")
    try:
        tmp = Path(tmpdir) / path.name
        run_tool(make(tmp))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # fails if a key appeared meanwhile: never overwrite
        except FileExistsError:
            raise KeyError_(f"{path} exists; refusing to overwrite a key") from None
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
        raise KeyError_(f"signing key {key} not found")
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
                raise KeyError_(
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
        raise KeyError_(f"signing key {key} not found")
    if Path(out).resolve() == Path(image).resolve():
        raise UsageError("output must not be the input image")
    run_tool(tool_argv("espsecure", "sign-data", "--version", "2", "--keyfile", key,
                       "--output", out, image))
    return str(out)


def verify_image(image, key):
    """Check an image's SBv2 signature against `key` (private or public PEM). Returns "OK";
    raises VerifyError with NOT_SIGNED, INVALID_HASH, KEY_MISMATCH or INVALID_SIGNATURE."""
    if not Path(key).is_file():
        raise KeyError_(f"verification key {key} not found")
    if not Path(image).is_file():
        raise UsageError(f"image {image} not found")
    proc = subprocess.run(tool_argv("espsecure", "verify-signature", "--version", "2",
                                    "--keyfile", key, image),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL)
    out = proc.stdout.decode(errors="replace")
    if proc.returncode == 0:
        return "OK"
    detail = _tool_message(out)
    if "multiple of 4096" in out:
        raise VerifyError("NOT_SIGNED", "no Secure Boot v2 signature sector")
    if "digest does not match" in out:
        raise VerifyError("INVALID_HASH", "image bytes differ from the signed digest")
    if "not signed by the supplied key" in out:
        raise VerifyError("KEY_MISMATCH", "signed, but not by this key")
    if "could not be verified" in out or "invalid" in out.lower():
        raise VerifyError("INVALID_SIGNATURE", detail)
    raise ToolError(f"espsecure failed (exit {proc.returncode}): {detail}")


# ---------------------------------------------------------------------------------------
# eFuses: targets, state, and the production burn plan


@dataclass(frozen=True)
class Target:
    """Where espefuse works: a serial port, or virtual eFuses persisted in a file."""
    chip: str
    port: str = None
    virt: str = None

    def espefuse(self, *cmd):
        where = (["--virt", "--path-efuse-file", self.virt] if self.virt
                 else ["--port", self.port] if self.port else [])
        return tool_argv("espefuse", "--chip", self.chip, *where, "--do-not-confirm", *cmd)

    def describe(self):
        return f"virtual eFuses in {self.virt}" if self.virt else (
            f"the chip on {self.port}" if self.port else "the first chip esptool finds")


@dataclass
class Step:
    title: str
    argv: list
    final: bool = False  # the download-mode restriction: after it espefuse cannot read back


def _target(chip, port=None, virt=None):
    if chip not in CHIPS:
        raise UsageError(f"chip must be one of {', '.join(CHIPS)}")
    if port and virt:
        raise UsageError("give either --port or --virt, not both")
    return Target(chip, port, str(virt) if virt else None)


def burn_steps(chip, keys, target):
    """The irreversible steps, in ESP-IDF's order: flash encryption first (its key must be
    read-protected before RD_DIS is write-protected), then Secure Boot v2, then the ROM
    download restriction last."""
    board = load_board(chip)
    sb, fe, ef = board["secure_boot"], board["flash_encryption"], target.espefuse
    if chip == "esp32":
        return [
            Step("Burn the flash-encryption key into BLOCK1 (read- and write-protected)",
                 ef("burn-key", "flash_encryption", keys["fe_key"])),
            Step("Enable flash encryption, release mode: FLASH_CRYPT_CNT=127, "
                 "FLASH_CRYPT_CONFIG=0xF",
                 ef("burn-efuse", "FLASH_CRYPT_CNT", "127", "FLASH_CRYPT_CONFIG", "0xF")),
            Step("Disable ROM-download encrypt/decrypt/cache, JTAG and the ROM console",
                 ef("burn-efuse", "DISABLE_DL_ENCRYPT", "1", "DISABLE_DL_DECRYPT", "1",
                    "DISABLE_DL_CACHE", "1", "JTAG_DISABLE", "1", "CONSOLE_DEBUG_DISABLE", "1")),
            Step("Write-protect those security eFuses (DIS_CACHE write-protect group)",
                 ef("write-protect-efuse", "DIS_CACHE")),
            Step("Burn the Secure Boot v2 key digest into BLOCK2 (write-protected, readable)",
                 ef("burn-key", "secure_boot_v2", keys["digest"])),
            Step("Enable Secure Boot v2 (ABS_DONE_1)", ef("burn-efuse", "ABS_DONE_1", "1")),
            Step("Write-protect RD_DIS: the digest can never be read-protected",
                 ef("write-protect-efuse", "RD_DIS")),
            Step("Disable UART ROM download mode (after this no tool reaches the ROM)",
                 ef("burn-efuse", "UART_DOWNLOAD_DIS", "1"), final=True),
        ]
    slot = int(sb["digest_purpose"][-1])
    revoke = [a for n in range(3) if n != slot for a in (f"SECURE_BOOT_KEY_REVOKE{n}", "1")]
    dcache = ["DIS_DOWNLOAD_DCACHE", "1"] if chip == "esp32s3" else []
    return [
        Step(f"Burn the flash-encryption key into {fe['key_block']} as {fe['key_purpose']} "
             "(read- and write-protected)",
             ef("burn-key", fe["key_block"], keys["fe_key"], fe["key_purpose"])),
        Step("Enable flash encryption, release mode: SPI_BOOT_CRYPT_CNT=7",
             ef("burn-efuse", "SPI_BOOT_CRYPT_CNT", "7")),
        Step("Disable ROM-download cache and manual encryption, JTAG (pad, USB, soft) "
             "and direct boot",
             ef("burn-efuse", "DIS_DOWNLOAD_ICACHE", "1", *dcache,
                "DIS_DOWNLOAD_MANUAL_ENCRYPT", "1", "DIS_PAD_JTAG", "1", "DIS_USB_JTAG", "1",
                "SOFT_DIS_JTAG", "7", "DIS_DIRECT_BOOT", "1")),
        Step("Write-protect those security eFuses (DIS_ICACHE write-protect group)",
             ef("write-protect-efuse", "DIS_ICACHE")),
        Step(f"Burn the Secure Boot v2 key digest into {sb['digest_block']} as "
             f"{sb['digest_purpose']} (write-protected, readable)",
             ef("burn-key", sb["digest_block"], keys["digest"], sb["digest_purpose"])),
        Step("Enable Secure Boot v2 and revoke the unused digest slots",
             ef("burn-efuse", "SECURE_BOOT_EN", "1", *revoke)),
        Step("Write-protect RD_DIS: the digest can never be read-protected",
             ef("write-protect-efuse", "RD_DIS")),
        Step("Switch ROM download to Secure Download Mode (after this espefuse cannot burn)",
             ef("burn-efuse", "ENABLE_SECURITY_DOWNLOAD", "1"), final=True),
    ]


def plan_secure_boot(chip, keys_dir, port=None, virt=None):
    """What `apply` would do, as data; runs nothing and writes nothing. `prepare` holds
    the espsecure commands run first; `missing` the keys a real chip needs beforehand."""
    target = _target(chip, port, virt)
    board = load_board(chip)
    keys = key_paths(keys_dir)
    prepare, missing = [], []
    makers = {
        "signing_key": tool_argv("espsecure", "generate-signing-key", "--version", "2",
                                 "--scheme", board["secure_boot"]["scheme"], keys["signing_key"]),
        "fe_key": tool_argv("espsecure", "generate-flash-encryption-key", "--keylen",
                            board["flash_encryption"]["key_bits"], keys["fe_key"]),
    }
    for name, argv in makers.items():
        if not Path(keys[name]).is_file():
            (prepare.append(argv) if target.virt else missing.append(keys[name]))
    prepare.append(tool_argv("espsecure", "extract-public-key", "--version", "2",
                             "--keyfile", keys["signing_key"], keys["public_key"]))
    prepare.append(tool_argv("espsecure", "digest-sbv2-public-key", "--keyfile",
                             keys["signing_key"], "--output", keys["digest"]))
    return {"chip": chip, "target": target, "scheme": board["secure_boot"]["scheme"],
            "keys": keys, "missing": missing, "prepare": prepare,
            "steps": burn_steps(chip, keys, target)}


def read_efuses(target, timeout=None):
    """espefuse summary as a dict {name: {value, raw_value, readable, writeable, ...}}.
    A read still running after `timeout` s is stopped (Unreachable)."""
    with tempfile.TemporaryDirectory(prefix="iotctl-efuse-") as tmp:
        out = Path(tmp) / "summary.json"
        run_tool(target.espefuse("summary", "--format", "json", "--file", out), timeout=timeout)
        return json.loads(out.read_text())


def _raw(efuses, name):
    return int(efuses[name]["raw_value"], 16)


def _block_bytes(efuses, name):
    """A key block's bytes, or None when it is read-protected."""
    entry = efuses[name]
    return bytes.fromhex(entry["value"]) if entry["readable"] else None


def _purpose_block(efuses, purpose):
    for n in range(6):
        if efuses.get(f"KEY_PURPOSE_{n}", {}).get("value") == purpose:
            return f"BLOCK_KEY{n}"
    return None


def security_state(chip, efuses, board=None):
    """The security-relevant eFuse state in one flat dict (same keys for every chip)."""
    board = board or load_board(chip)
    if chip == "esp32":
        digest = _block_bytes(efuses, "BLOCK2")
        return {
            "chip_revision": efuses["WAFER_VERSION_MAJOR"]["value"],
            "secure_boot": bool(efuses["ABS_DONE_1"]["value"]),
            "secure_boot_v1": bool(efuses["ABS_DONE_0"]["value"]),
            "digest": digest.hex() if digest and any(digest) else None,
            "flash_crypt_cnt": _raw(efuses, "FLASH_CRYPT_CNT"),
            "flash_encryption": bin(_raw(efuses, "FLASH_CRYPT_CNT")).count("1") % 2 == 1,
            "fe_key_protected": not efuses["BLOCK1"]["readable"],
            "jtag_disabled": bool(efuses["JTAG_DISABLE"]["value"]),
            "download_restricted": bool(efuses["UART_DOWNLOAD_DIS"]["value"]),
            "rd_dis_locked": not efuses["RD_DIS"]["writeable"],
        }
    block = _purpose_block(efuses, board["secure_boot"]["digest_purpose"])
    digest = _block_bytes(efuses, block) if block else None
    fe_block = _purpose_block(efuses, board["flash_encryption"]["key_purpose"])
    cnt = _raw(efuses, "SPI_BOOT_CRYPT_CNT")
    return {
        "chip_revision": efuses["WAFER_VERSION_MAJOR"]["value"],
        "secure_boot": bool(efuses["SECURE_BOOT_EN"]["value"]),
        "secure_boot_v1": False,
        "digest": digest.hex() if digest else None,
        "digest_block": block,
        "flash_crypt_cnt": cnt,
        "flash_encryption": bin(cnt).count("1") % 2 == 1,
        "fe_key_protected": bool(fe_block) and not efuses[fe_block]["readable"],
        "jtag_disabled": all(bool(efuses[n]["value"]) for n in ("DIS_PAD_JTAG", "DIS_USB_JTAG")),
        "download_restricted": bool(efuses["ENABLE_SECURITY_DOWNLOAD"]["value"]
                                    or efuses["DIS_DOWNLOAD_MODE"]["value"]),
        "rd_dis_locked": not efuses["RD_DIS"]["writeable"],
    }


def _blank_problems(chip, board, efuses):
    """Why this chip cannot take the production burn (empty list: it can)."""
    state = security_state(chip, efuses, board)
    problems = []
    if chip == "esp32" and _raw(efuses, "CODING_SCHEME") != 0:
        problems.append("the eFuse coding scheme is 3/4; this plan needs 256-bit key blocks")
    if state["secure_boot"] or state["secure_boot_v1"]:
        problems.append("secure boot is already enabled")
    if state["flash_crypt_cnt"]:
        problems.append(f"the flash-crypt counter is already {state['flash_crypt_cnt']:#x}")
    if state["download_restricted"]:
        problems.append("ROM download mode is already restricted")
    if state["rd_dis_locked"]:
        problems.append("RD_DIS is already write-protected")
    blocks = [board["secure_boot"]["digest_block"], board["flash_encryption"]["key_block"]]
    for name in blocks:
        entry = efuses[name]
        if not entry["readable"] or not entry["writeable"] or any(bytes.fromhex(entry["value"])):
            problems.append(f"key block {name} is already burnt or protected")
        if chip != "esp32":
            purpose = efuses[f"KEY_PURPOSE_{name[-1]}"]["value"]
            if purpose != "USER":
                problems.append(f"KEY_PURPOSE_{name[-1]} is already {purpose}")
    minimum = board["secure_boot"].get("min_chip_revision")
    if minimum is not None and state["chip_revision"] < minimum:
        problems.append(f"chip revision v{state['chip_revision']} has no Secure Boot v2 "
                        f"(needs v{minimum}.0 or later)")
    return problems


def _check_burnt(chip, board, efuses, digest, final):
    """Raise DeviceError unless the eFuses now hold what the plan burnt."""
    state = security_state(chip, efuses, board)
    wrong = []
    if not state["secure_boot"]:
        wrong.append("secure boot is not enabled")
    if state["digest"] != digest.hex():
        wrong.append("the key digest in eFuse does not match the signing key")
    block = board["secure_boot"]["digest_block"]
    if efuses[block]["writeable"]:
        wrong.append(f"{block} is not write-protected")
    if not state["flash_encryption"] or not state["fe_key_protected"]:
        wrong.append("flash encryption is not enabled with a read-protected key")
    if not state["jtag_disabled"]:
        wrong.append("JTAG is not disabled")
    if not state["rd_dis_locked"]:
        wrong.append("RD_DIS is not write-protected")
    if final and not state["download_restricted"]:
        wrong.append("ROM download mode is not restricted")
    if wrong:
        raise DeviceError("after burning: " + "; ".join(wrong))
    return state


def apply_secure_boot(chip, keys_dir, port=None, virt=None, confirm=None, report=None,
                      keep_fe_key=False, timeout=None):
    """Burn the production eFuses. Reads the chip first and refuses one that is not blank
    (so applying twice burns nothing). `confirm(plan)` must return True before anything
    is created or burnt (None: already confirmed, e.g. --yes). Returns the final state.
    `timeout` bounds each read of the eFuses; a burn is never interrupted (a half-burnt
    chip is worse than a slow one), espefuse's own connection attempts bound it."""
    plan = plan_secure_boot(chip, keys_dir, port, virt)
    target, board = plan["target"], load_board(chip)
    problems = _blank_problems(chip, board, read_efuses(target, timeout))
    if problems:
        raise DeviceError(f"refusing to burn {chip} eFuses on {target.describe()}: "
                          + "; ".join(problems) + ". Nothing was burnt.")
    if plan["missing"]:
        raise KeyError_(
            f"{', '.join(plan['missing'])} not found. On a real chip the keys must be the ones "
            "the flashed images were signed and encrypted with: create them with `iotctl "
            "secure-boot keys`, sign the images, flash with --encrypt-key, then apply")
    if confirm is not None and not confirm(plan):
        raise UsageError("not confirmed; nothing was burnt")
    # On a real chip, new keys would not match the signed and encrypted flash contents.
    keys = prepare_keys(chip, keys_dir, generate=bool(target.virt))
    digest = Path(keys["digest"]).read_bytes()
    steps = plan["steps"]
    for i, step in enumerate(steps, 1):
        if step.final:  # last chance to read back: espefuse cannot after this step
            _check_burnt(chip, board, read_efuses(target, timeout), digest, final=False)
        if report:
            report(i, len(steps), step)
        run_tool(step.argv)
    state = None
    if target.virt:
        state = _check_burnt(chip, board, read_efuses(target, timeout), digest, final=True)
    if not keep_fe_key:
        os.remove(keys["fe_key"])  # the chip holds it now; no host copy should remain
    return {"chip": chip, "target": target.describe(), "steps": len(steps),
            "digest": digest.hex(), "fe_key_deleted": not keep_fe_key, "state": state}
