"""The reconnect policy (firmware/backoff.py) and the fleet it produces (bench/fleet.py).

The fleet simulation runs the device's file under CPython; the first test proves that the
unix port computes the very same delays for the same seeds, so the simulated fleet is the
real firmware's fleet.
"""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import fleet
from host_tools import mpy

REPO = Path(__file__).resolve().parents[2]
bo = fleet.load_backoff()


def host_sequence(seed):
    """What tests/device/backoff_seq.py prints, computed by CPython."""
    g = bo.XorShift32(seed)
    raw = [g() for _ in range(4)]
    b = bo.Backoff(rng=bo.XorShift32(seed))
    delays = [b.after_boot()] + [b.after_failure() for _ in range(12)]
    delays += [b.after_loss(b.stable_ms), b.after_failure(), b.after_loss(b.stable_ms - 1)]
    small = bo.Backoff(base_ms=1, cap_ms=1, initial_window_ms=0, stable_ms=0,
                       rng=bo.XorShift32(seed))
    delays += [small.after_boot(), small.after_failure(), small.after_loss(0)]
    return {"seed": seed, "raw": raw, "delays": delays, "attempt": b.attempt}


def test_device_and_host_compute_the_same_delays():
    proc = mpy.run(REPO / "tests" / "device" / "backoff_seq.py", ["0", "400"],
                   extra_path=[REPO / "firmware"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 400
    for line in lines:
        got = json.loads(line)
        assert got == host_sequence(got["seed"])
    # Seeds 0..399 cover the fleet's first devices; and they are not all alike.
    assert len({json.loads(line)["delays"][0] for line in lines}) > 390


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(1, 10_000), st.integers(0, 400_000), st.integers(0, 200_000),
       st.integers(0, 2**32 - 1), st.integers(0, 40))
def test_every_delay_is_within_its_bound(base, extra, window, seed, failures):
    cap = base + extra
    b = bo.Backoff(base_ms=base, cap_ms=cap, initial_window_ms=window, stable_ms=1000,
                   rng=bo.XorShift32(seed))
    assert 0 <= b.after_boot() <= window and b.attempt == 0
    for k in range(failures):
        assert 0 <= b.after_failure() <= min(cap, base * 2 ** k)
    assert 0 <= b.after_loss(999) <= cap  # short-lived: still backing off
    assert 0 <= b.after_loss(1000) <= window and b.attempt == 0  # stable: start afresh


def test_full_jitter_is_uniform_up_to_the_cap():
    b = bo.Backoff(rng=bo.XorShift32(5))
    for _ in range(30):  # long past the cap
        b.after_failure()
    assert b.attempt == 24  # the counter saturates: no ever-growing integers
    draws = [b.after_failure() for _ in range(40_000)]
    assert max(draws) <= bo.CAP_MS
    mean = sum(draws) / len(draws)
    assert abs(mean - bo.CAP_MS / 2) < 0.01 * bo.CAP_MS
    for q in (0.1, 0.5, 0.9):  # the empirical CDF of a uniform
        frac = sum(d <= q * bo.CAP_MS for d in draws) / len(draws)
        assert abs(frac - q) < 0.01, (q, frac)
    w = [bo.Backoff(rng=bo.XorShift32(s)).after_boot() for s in range(20_000)]
    assert abs(sum(w) / len(w) - bo.INITIAL_WINDOW_MS / 2) < 0.01 * bo.INITIAL_WINDOW_MS


def test_system_rng_and_defaults():
    draws = {bo.system_rng() for _ in range(100)}
    assert len(draws) > 95 and all(0 <= d < 2**32 for d in draws)
    b = bo.Backoff()
    assert (b.base_ms, b.cap_ms, b.initial_window_ms, b.stable_ms) == (2000, 150_000, 90_000,
                                                                       60_000)
    for bad in ({"base_ms": 0}, {"base_ms": 10, "cap_ms": 5}, {"initial_window_ms": -1},
                {"stable_ms": -1}):
        with pytest.raises(ValueError):
            bo.Backoff(**bad)


def test_fleet_reconnects_in_an_orderly_fashion():
    r = fleet.run()
    assert r["fleet_size"] == 10_000
    assert r["fleet_peak_connect_fraction"] <= 0.02, r
    assert r["fleet_naive_peak_connect_fraction"] >= 0.99, r
    assert r["fleet_reconnect_p99_s"] <= r["fleet_backoff_cap_s"], r
    assert r["fleet_reconnect_max_s"] <= r["fleet_backoff_cap_s"], r
    assert r["fleet_boot_peak_connect_fraction"] <= 0.02, r
    # The arithmetic in backoff.py: 2N/cap attempts per second once everyone is capped,
    # p99 at 0.9 cap.
    assert abs(r["fleet_down_attempts_per_s_steady"] - 2 * 10_000 / 150) < 10, r
    assert abs(r["fleet_reconnect_p99_s"] - 0.9 * 150) < 5, r
    assert r["fleet_down_attempts_per_s_peak"] < r["fleet_naive_down_attempts_per_s"] / 10, r
