# Smallest heap for the boot stage: mount, choose and fully verify a slot, as at power-on.
#   micropython [-X heapsize=N] boot_heap.py SIMDIR [FREE_KIB]   -> prints BOOT-OK slot version
# With FREE_KIB the boot stage's code counts as frozen (as in production firmware): it is
# loaded first, then the heap is filled until only FREE_KIB KiB stay free. The map of the
# ROMFS region (flash on a board, romwindow.RomWindow) is allocated first, as at power-on; its
# size is printed so that the bench can take it out of a heapsize that had to hold it.
import sys

import bootstage
import flash
import romwindow
from servicejig import sim_config


class NoHal:
    def reset(self):
        pass


fl = flash.Flash(sys.argv[1] + "/flash.bin")  # simulated hardware, not firmware
regions = romwindow.map_romfs(fl)
if len(sys.argv) > 2:
    import unixboard

    ballast = unixboard.reserve_heap(int(sys.argv[2]))
flash.mount_factory(fl)
flash.mount_data(fl)
b = bootstage.start(NoHal(), sim_config(), lambda m: None)
print("BOOT-OK" if b.slot else "BOOT-FAILED", b.slot, b.version,
      "map=%d" % (regions.window.size if regions else 0))
