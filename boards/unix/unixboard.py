# Power-on entry of the simulated board: mount flash, run the boot stage, then the verified app
# or alert-only mode.   micropython unixboard.py SIMDIR BOOT_NUMBER
import sys

import alertmode
import bootstage
import romwindow
from hal import Hal
from servicejig import power_on


def log(msg):
    print("[device] " + msg)


def reserve_heap(kib):
    """Model a board whose boot stage and HAL are frozen into the firmware: their bytecode is
    already loaded here (the unix port cannot freeze), so fill the heap until only `kib` KiB
    stay free for everything else. The ballast is made of single-block objects (boxed
    floats): first fit puts them into every hole between the loaded code, so what stays free
    is one contiguous region, as on a board. Used by benchmarks (sim.json "free_heap_kib")."""
    import gc
    # The boot stage's modules that the app imports later: frozen code on a board too.
    import ed25519  # noqa: F401
    import marks  # noqa: F401
    import mqttwire  # noqa: F401
    import p256  # noqa: F401
    import sealed  # noqa: F401
    import tlsctx  # noqa: F401
    gc.collect()
    target = kib * 1024
    chunks = [None] * ((gc.mem_free() - target) // 8192 + 8)
    n = 0
    x = 0.5
    while gc.mem_free() > target and n < len(chunks):
        chunk = [None] * 256
        for j in range(256):
            chunk[j] = x + j  # a new boxed float: one GC block
            if not j % 32 and gc.mem_free() <= target:
                break
        chunks[n] = chunk
        n += 1
    gc.collect()
    return chunks


def main(simdir, boot_number):
    board = Hal(simdir, boot_number=boot_number)
    fl = board.flash  # the simulated NOR chip's buffers are hardware, not firmware heap
    romwindow.map_romfs(fl)  # so is the map of the app's ROMFS region (romwindow.RomWindow)
    free_kib = board._read_config(board._sim["config"]).get("free_heap_kib")
    ballast = reserve_heap(free_kib) if free_kib else None  # noqa: F841  (kept alive)
    boot = bootstage.start(board, None, log, power_on(fl))
    if boot.slot is None:
        alertmode.run(boot, board.channel)
    board.report(boot, "normal")
    boot.run_app()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
