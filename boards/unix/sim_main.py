# Power-on entry of the simulated board: mount flash, run the boot stage, then the verified app
# or alert-only mode.   micropython sim_main.py SIMDIR BOOT_NUMBER
import json
import sys
import time

import alertmode
import bootstage
import files
import flash
import simctl
from hal import Hal
from simtool import power_on


class SimBoard(Hal):
    """The simulated board plus what the sim host watches: the boot report and the inbox."""

    def __init__(self, simdir, boot_number):
        super().__init__(simdir)
        self.simdir = simdir
        self.boot_number = boot_number
        self.channel = simctl.Channel(simdir + "/run")
        cfg = self._read_config(self._sim["config"])
        self.https_port = cfg.get("https_port", 8443)
        if self.network is not None:
            # Two interfaces, two addresses: the API on the station's (loopback), the set-up
            # page alone on the access point's (simradio.AP_ADDRESS), as on a board.
            self.api_host = "127.0.0.1"
            self.setup_port = cfg.get("setup_port", self.https_port + 1)
            self.setup_window_s = cfg.get("setup_window_s", 600)
        self.heap_sample_ms = cfg.get("heap_sample_ms", 0)

    def report(self, boot, mode):
        """Publish the boot decision for `iotctl sim status` (atomic write)."""
        st = boot.state() if boot.anchors else {}
        doc = {"boot": self.boot_number, "mode": mode, "slot": boot.slot,
               "version": boot.version, "trial": boot.trial, "last": st.get("last", ""),
               "reasons": boot.reasons, "time": time.time()}
        path = self.simdir + "/run/device.json"
        files.write_json(path, doc)

    def services(self, boot):
        """Board tasks the application runs beside its own: the simulator's service channel
        and, when sim.json asks for it (benchmarks), a sampler of the live heap."""
        tasks = [simctl.serve(boot, self.channel)]
        if self.heap_sample_ms:
            tasks.append(self._sample_heap())
        return tasks

    async def _sample_heap(self):
        # Live heap = allocated right after a collection; the peak goes to run/heap.json.
        import asyncio
        import gc
        peak = 0
        while True:
            gc.collect()
            live = gc.mem_alloc()
            if live > peak:
                peak = live
                with open(self.simdir + "/run/heap.json", "w") as f:
                    f.write(json.dumps({"peak_live_bytes": peak, "heap_bytes": live +
                                        gc.mem_free()}))
            await asyncio.sleep_ms(self.heap_sample_ms)


def log(msg):
    print("[device] " + msg)


def reserve_heap(kib):
    """Model a board whose boot stage and HAL are frozen into the firmware: their bytecode is
    already loaded here (the unix port cannot freeze), so fill the heap until only `kib` KiB
    stay free for everything else. The ballast is made of single-block objects (boxed
    floats): first fit puts them into every hole between the loaded code, so what stays free
    is one contiguous region, as on a board. Used by benchmarks (sim.json "free_heap_kib")."""
    import gc
    import ed25519  # noqa: F401  (frozen code on a board)
    import p256  # noqa: F401
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
    board = SimBoard(simdir, boot_number)
    fl = board.flash  # the simulated NOR chip's buffers are hardware, not firmware heap
    free_kib = board._read_config(board._sim["config"]).get("free_heap_kib")
    ballast = reserve_heap(free_kib) if free_kib else None  # noqa: F841  (kept alive)
    boot = bootstage.start(board, None, log, power_on(fl))
    if boot.slot is None:
        alertmode.run(boot, board.channel)
    board.report(boot, "normal")
    boot.run_app()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
