# Frozen modules of the product, shared by the ESP32 boards (boards/<board>/manifest.py
# includes it with board="..."): the boot stage (bootloader/), the board's HAL and power-on
# entry (main.py, boot.py), its board.json as the module `boardcfg`, and, for production, the
# trust anchors as `trust_anchors`, so that Secure Boot v2 covers all of them.
#   IOT_KEYS=DIR       freeze DIR/keys.json's root public key(s) (iotctl keys init; public only)
#   IOT_KEY_FLOOR=N    lowest update-key serial the firmware accepts (default 1)
#   IOT_FROZEN_DIR=D   where the generated modules go (default: build/frozen/<board>)
# makemanifest runs this file from its own folder, so relative paths start at boards/common.
import json
import os

options.defaults(board=None)
if options.board not in ("esp32", "esp32s3", "esp32c3"):
    raise ValueError("include boards/common/manifest.py with board=esp32|esp32s3|esp32c3")

_common = os.getcwd()
_repo = os.path.dirname(os.path.dirname(_common))
_board_dir = os.path.join(_repo, "boards", options.board)
_out = os.environ.get("IOT_FROZEN_DIR") or os.path.join(_repo, "build", "frozen", options.board)
os.makedirs(_out, exist_ok=True)

# The boot stage: every module of bootloader/, as top-level modules.
_boot_stage = os.path.join(_repo, "bootloader")
for _name in sorted(os.listdir(_boot_stage)):
    if _name.endswith(".py"):
        module(_name, base_path=_boot_stage)

# The board: shared HAL and power-on sequence, this board's HAL, and the frozen entry points
# (a frozen boot.py/main.py runs instead of one on the data filesystem).
for _name in ("esp32hal.py", "esp32board.py", "main.py", "boot.py"):
    module(_name, base_path=_common)
module("hal.py", base_path=_board_dir)


def _write(name, text):
    path = os.path.join(_out, name)
    with open(path, "w") as f:
        f.write(text)
    return name


with open(os.path.join(_board_dir, "board.json")) as _f:
    _cfg = json.load(_f)
module(_write("boardcfg.py", "# Generated from boards/%s/board.json by boards/common/"
                             "manifest.py.\nCONFIG = %r\n" % (options.board, _cfg)),
       base_path=_out)

_keys = os.environ.get("IOT_KEYS")
_anchors = os.path.join(_out, "trust_anchors.py")
if _keys:
    with open(os.path.join(_keys, "keys.json")) as _f:
        _info = json.load(_f)
    _doc = {"roots": [{"alg": _info["root_alg"], "key": _info["root_public"]}],
            "key_floor": int(os.environ.get("IOT_KEY_FLOOR", "1"))}
    module(_write("trust_anchors.py", "# Generated from %s/keys.json by boards/common/"
                                      "manifest.py: the pinned root key(s).\nANCHORS = %r\n"
                                      % (os.path.basename(_keys.rstrip("/")), _doc)),
           base_path=_out)
elif os.path.exists(_anchors):
    os.remove(_anchors)  # a development build must not pick up a previous build's anchors
