"""ESP32 boards: board.json with its flash-size variant and validated partition table."""

import json

from ..errors import UsageError
from ..mpy import REPO
from . import partitions

BOARDS_DIR = REPO / "boards"
CHIPS = ("esp32", "esp32s3", "esp32c3")


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
