# Device side of test_backoff: the delays firmware/backoff.py gives for a range of seeds.
# Usage: micropython backoff_seq.py FIRST_SEED COUNT   -> one JSON line per seed:
#   {"seed", "raw": first 4 draws, "delays": boot, 12 failures, a long and a short loss, ...}
import json
import sys

from backoff import Backoff, XorShift32

first, count = int(sys.argv[1]), int(sys.argv[2])
for seed in range(first, first + count):
    g = XorShift32(seed)
    raw = [g() for _ in range(4)]
    b = Backoff(rng=XorShift32(seed))
    delays = [b.after_boot()] + [b.after_failure() for _ in range(12)]
    delays += [b.after_loss(b.stable_ms), b.after_failure(), b.after_loss(b.stable_ms - 1)]
    small = Backoff(base_ms=1, cap_ms=1, initial_window_ms=0, stable_ms=0, rng=XorShift32(seed))
    delays += [small.after_boot(), small.after_failure(), small.after_loss(0)]
    print(json.dumps({"seed": seed, "raw": raw, "delays": delays, "attempt": b.attempt}))
