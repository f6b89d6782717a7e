# The primary ROMFS region of the simulated board as a board maps it, and the board's regions
# (romslots.Regions) on its flash. Only the primary region is ever mapped (MicroPython's ESP32
# port maps exactly one `romfs` partition); the other two are read block by block.
from flash import SECTOR


class RomWindow:
    """The primary ROMFS region as the board maps it. On an ESP32 the MMU maps the `romfs`
    partition into the address space (vfs.rom_ioctl, esp_partition_mmap) and bytecode runs
    from there; the unix port has neither, so the map is a buffer that the board allocates at
    power-on, before the heap budget of a benchmark is set (sim_main.reserve_heap): like the
    flash of a board, it is not part of the heap the application can use. It holds what the
    region holds once the boot stage has settled the slots (fill()); only the primary region
    is ever mapped, the other two partitions can only be read block by block, as on a board."""

    def __init__(self, part):
        self.part = part
        self._buf = None

    @property
    def size(self):
        """Bytes of the map (0 before reserve()): benchmarks leave them out of the heap."""
        return len(self._buf) if self._buf is not None else 0

    def reserve(self, size):
        """Allocate the map (size: the largest image either region can bring into it)."""
        size = (size + SECTOR - 1) // SECTOR * SECTOR or SECTOR
        if self._buf is None or len(self._buf) < size:
            self._buf = None
            self._buf = bytearray(size)

    def __call__(self, size):
        """The first `size` bytes of the primary region, mapped (read now, read-only use)."""
        if self._buf is None or len(self._buf) < size:
            self.reserve(size)
        mv = memoryview(self._buf)[:size]
        self.part.readblocks(0, mv)
        return mv


def rom_regions(flash):
    """The ROMFS regions of the board (romslots.Regions, one per Flash), or None if its table
    has none."""
    import romslots
    if "romfs" not in flash.table():
        return None
    if flash._regions is None:
        p = flash.partition("romfs")
        flash._regions = romslots.Regions(p, flash.partition("romfs_b"),
                                          flash.partition("romfs_s"), RomWindow(p))
    return flash._regions


def map_romfs(flash):
    """Power-on: reserve the map of the primary region for the largest image either region
    holds (the boot stage may swap the other one in). Returns the Regions, or None."""
    import romslots
    r = rom_regions(flash)
    if r is not None:
        buf = bytearray(romslots.HEADER_LEN)
        r.window.reserve(max(romslots.used(r.primary, buf), romslots.used(r.secondary, buf)))
    return r
