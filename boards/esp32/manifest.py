# Frozen modules of the esp32 firmware: MicroPython's own (the port's default manifest), then
# the product's (boards/common/manifest.py): boot stage, HAL, entry points, board.json and,
# with IOT_KEYS set, the trust anchors. Build recipe: docs/real-board.md.
include("$(PORT_DIR)/boards/manifest.py")
include("../common/manifest.py", board="esp32")
