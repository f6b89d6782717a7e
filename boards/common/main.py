# Power-on entry of a real board, frozen into the firmware as main.py: a frozen main.py runs
# instead of any main.py on the data filesystem, and only frozen modules are importable from
# here on, so nothing stored in flash outside the verified app slot can shadow the boot stage.
import sys

sys.path[:] = [".frozen"]

import esp32board  # noqa: E402

esp32board.main()
