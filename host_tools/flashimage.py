"""Flash images of a board: blank images, raw partitions, and littlefs contents that the
device mounts as-is (same geometry as `boards/<board>/flash.py` uses, from board.json)."""

import json
import os
import posixpath
from contextlib import contextmanager
from pathlib import Path

from littlefs import LittleFS, LittleFSError, UserContext

from .errors import DeviceError, UsageError
from .esp import partitions

REPO = Path(__file__).resolve().parent.parent
ERASED = 0xFF
# Every board folder under boards/: the one list `--board` offers in every command (a test
# checks it against the folders).
BOARDS = ("unix", "esp32", "esp32s3", "esp32c3")


def board_dir(board="unix"):
    path = REPO / "boards" / board
    if not (path / "board.json").is_file():
        raise UsageError(f"unknown board {board!r}: no {path / 'board.json'}")
    return path


def board_config(board="unix"):
    """The board's board.json as a dict."""
    with open(board_dir(board) / "board.json", encoding="utf-8") as f:
        return json.load(f)


def partition_table(board="unix"):
    """The board's partition table, validated against its flash size."""
    cfg = board_config(board)
    parts = partitions.load(board_dir(board) / cfg["partition_table"])
    return partitions.validate(parts, cfg["flash_size"])


def find_partition(name, board="unix"):
    return partitions.find(partition_table(board), name)


def image_name(board="unix"):
    """File name of the flash image inside a simulated device's run directory."""
    return board_config(board)["sim"]["image"]


def lfs_geometry(name, board="unix"):
    """littlefs-python keyword arguments matching what the device mounts on `name`."""
    cfg = board_config(board)
    lfs = cfg["littlefs"]
    part = find_partition(name, board)
    major, minor = lfs["disk_version"]
    return dict(block_size=cfg["block_size"], block_count=part.size // cfg["block_size"],
                read_size=lfs["read_size"], prog_size=lfs["prog_size"],
                cache_size=lfs["cache_size"], lookahead_size=lfs["lookahead_size"],
                block_cycles=lfs["block_cycles"], name_max=lfs["name_max"],
                disk_version=(major << 16) | minor)


def _check_image(image_path, board):
    image_path = Path(image_path)
    if not image_path.is_file():
        raise UsageError(f"no flash image at {image_path}")
    want = board_config(board)["flash_size"]
    size = image_path.stat().st_size
    if size != want:
        raise UsageError(f"{image_path} is {size} bytes; board {board} has a {want}-byte flash")
    return image_path


def create_blank(image_path, board="unix", overwrite=False):
    """Write an erased (all 0xFF) image of the board's exact flash size."""
    image_path = Path(image_path)
    if image_path.exists() and not overwrite:
        raise UsageError(f"{image_path} exists; refusing to overwrite it")
    size = board_config(board)["flash_size"]
    chunk = bytes([ERASED]) * (1 << 20)
    tmp = image_path.with_name(image_path.name + ".tmp")
    with open(tmp, "wb") as f:
        for _ in range(size // len(chunk)):
            f.write(chunk)
        f.write(chunk[: size % len(chunk)])
    os.replace(tmp, image_path)
    return image_path


def read_partition(image_path, name, board="unix"):
    """The raw bytes of partition `name`."""
    image_path = _check_image(image_path, board)
    part = find_partition(name, board)
    with open(image_path, "rb") as f:
        f.seek(part.offset)
        return f.read(part.size)


def write_partition(image_path, name, data, board="unix"):
    """Replace partition `name` with `data`, the rest erased (0xFF), like erase + program."""
    image_path = _check_image(image_path, board)
    part = find_partition(name, board)
    if len(data) > part.size:
        raise UsageError(f"{len(data)} bytes do not fit partition {name} ({part.size} bytes)")
    with open(image_path, "r+b") as f:
        f.seek(part.offset)
        f.write(bytes(data))
        f.write(bytes([ERASED]) * (part.size - len(data)))


def erase_partition(image_path, name, board="unix"):
    """Erase partition `name` (all 0xFF)."""
    write_partition(image_path, name, b"", board)


def is_blank(image_path, name, board="unix"):
    """True if partition `name` is entirely erased."""
    data = read_partition(image_path, name, board)
    return data.count(ERASED) == len(data)


@contextmanager
def _mounted(image_path, name, board, write=False, format_blank=False):
    """Yield a LittleFS over a copy of the partition; write it back if `write`."""
    data = bytearray(read_partition(image_path, name, board))
    fs = LittleFS(UserContext(buffer=data), mount=False, **lfs_geometry(name, board))
    try:
        fs.mount()
    except LittleFSError as exc:
        if not (format_blank and data.count(ERASED) == len(data)):
            raise DeviceError(
                f"partition {name} of {image_path} holds no littlefs this board can mount "
                f"({exc.name}); refusing to format data that cannot be read") from None
        fs.format()
        fs.mount()
    try:
        yield fs
    except LittleFSError as exc:
        if exc.code == LittleFSError.Error.LFS_ERR_NOSPC:
            raise UsageError(f"no space left in partition {name}") from None
        raise DeviceError(f"littlefs error in partition {name}: {exc.name}") from None
    fs.unmount()
    if write:
        write_partition(image_path, name, data, board)


def _norm(path):
    """A partition-relative path: '/'-separated, no leading '/', no '.' or '..' segment."""
    parts = [p for p in str(path).split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise UsageError(f"bad path {path!r}")
    return "/".join(parts)


def format_partition(image_path, name, board="unix"):
    """Erase partition `name` and put an empty littlefs on it (destroys its contents)."""
    erase_partition(image_path, name, board)
    with _mounted(image_path, name, board, write=True, format_blank=True):
        pass


def write_files(image_path, name, files, board="unix", format_blank=True):
    """Write {path: bytes} into the littlefs of partition `name`, creating parent
    directories and replacing existing files. A blank partition is formatted first;
    a partition with data littlefs cannot mount is refused (DeviceError)."""
    with _mounted(image_path, name, board, write=True, format_blank=format_blank) as fs:
        for path, data in files.items():
            path = _norm(path)
            parent = posixpath.dirname(path)
            if parent:
                fs.makedirs(parent, exist_ok=True)
            with fs.open(path, "wb") as f:
                f.write(bytes(data))


def remove_files(image_path, name, paths, board="unix"):
    """Remove files or directory trees from the littlefs of partition `name`."""
    with _mounted(image_path, name, board, write=True) as fs:
        for path in paths:
            path = _norm(path)
            try:
                fs.remove(path, recursive=True)
            except FileNotFoundError:
                raise UsageError(f"no {path} in partition {name}") from None


def read_file(image_path, name, path, board="unix"):
    """The bytes of one file in the littlefs of partition `name`."""
    path = _norm(path)
    with _mounted(image_path, name, board) as fs:
        try:
            with fs.open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError):
            raise UsageError(f"no file {path} in partition {name}") from None


def list_files(image_path, name, board="unix", root=""):
    """Sorted paths of every file under `root` in the littlefs of partition `name`."""
    with _mounted(image_path, name, board) as fs:
        return sorted(_walk(fs, _norm(root) if root.strip("/") else ""))


def read_files(image_path, name, board="unix", root=""):
    """{path: bytes} of every file under `root` in the littlefs of partition `name`."""
    with _mounted(image_path, name, board) as fs:
        out = {}
        for path in sorted(_walk(fs, _norm(root) if root.strip("/") else "")):
            with fs.open(path, "rb") as f:
                out[path] = f.read()
        return out


def _walk(fs, top):
    try:
        entries = list(fs.scandir(top or "/"))
    except (FileNotFoundError, LittleFSError):
        raise UsageError(f"no directory {top or '/'}") from None
    for entry in entries:
        path = f"{top}/{entry.name}" if top else entry.name
        if entry.type == entry.TYPE_DIR:
            yield from _walk(fs, path)
        else:
            yield path


def fs_info(image_path, name, board="unix"):
    """Geometry and usage of the littlefs of partition `name`."""
    with _mounted(image_path, name, board) as fs:
        st = fs.fs_stat()
        return {"disk_version": f"{st.disk_version >> 16}.{st.disk_version & 0xFFFF}",
                "block_size": st.block_size, "block_count": st.block_count,
                "used_blocks": fs.used_block_count, "name_max": st.name_max}


ROMFS_REGIONS = ("romfs", "romfs_b")  # the app slots' regions (docs/FORMAT.md)


def _region_header(data):
    # (version, image offset, image size) from a region's unauthenticated prefix, or None.
    import struct
    if data[:4] != b"IOTB":
        return None
    mlen, clen, slen, plen = struct.unpack_from("<IHHI", data, 8)
    try:
        version = json.loads(data[64:64 + mlen])["version"]
    except (ValueError, KeyError, TypeError):
        return None
    off = (64 + mlen + clen + slen + 4095) // 4096 * 4096
    return version, off, plen


def slot_images(image_path, board="unix"):
    """{region: app version or None}: what the signed header of each ROMFS region names (not
    verified: for tests and the demo, which look at a flash image with the device off)."""
    out = {}
    for name in ROMFS_REGIONS:
        head = read_partition(image_path, name, board)[:64 + 8192]
        got = _region_header(head)
        out[name] = got[0] if got else None
    return out


def tamper_slot(image_path, version, path=None, board="unix"):
    """With the device off, change one byte of the ROMFS image of the app slot holding
    `version`: in the data of file `path` of the image if given, else its last byte, as an
    attacker with the flash in hand would. Returns the region's name."""
    image_path = _check_image(image_path, board)
    for name in ROMFS_REGIONS:
        data = bytearray(read_partition(image_path, name, board))
        got = _region_header(bytes(data[:64 + 8192]))
        if not got or got[0] != version:
            continue
        _v, off, size = got
        at = off + size - 1
        if path is not None:
            pos = data.find(path.rsplit("/", 1)[-1].encode(), off, off + size)
            if pos < 0:
                raise UsageError(f"{path} is not in the image of {version}")
            at = pos + len(path.rsplit("/", 1)[-1]) + 8  # inside the file's data record
        data[at] ^= 0x5A
        part = find_partition(name, board)
        with open(image_path, "r+b") as f:
            f.seek(part.offset + at)
            f.write(bytes(data[at:at + 1]))
        return name
    raise UsageError(f"no ROMFS region holds version {version}")
