# Device side of test_flash: Hal.reset() ends the process with the restart exit code.
# Usage: micropython hal_reset.py RUN_DIR
import sys

import hal

h = hal.Hal(sys.argv[1])
h.flash  # an open image is closed on the way out
h.reset()
print("reset returned")  # never reached
