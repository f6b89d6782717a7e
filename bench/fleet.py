"""Fleet reconnection (ETSI TS 103 645 provision 4.9-3): 10,000 devices and one broker.

Every simulated device runs the firmware's own reconnect policy: this module loads
firmware/backoff.py itself (integer milliseconds, so CPython computes exactly what the
device computes; tests/host/test_backoff.py checks that on the unix port, seed by seed) and
drives it the way mqtt.Link does: `after_loss` when a stable connection drops, then
`after_failure` after each refused attempt, until an attempt finds the broker up.

Scenarios (attempts take no time and the broker accepts everyone once it is back, so the
figures are about the devices' timing alone):
- outage: all devices lose the broker at t=0, it is back at t=600 s;
- naive: the same outage with firmware that retries every 5 s (no jitter, no backoff);
- boot: all devices power up together with the broker up (e.g. after a power cut).
See firmware/backoff.py for the arithmetic behind the chosen cap and window.
"""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLEET = 10_000
OUTAGE_S = 600
NAIVE_RETRY_S = 5
SEED = 20240


def load_backoff():
    """firmware/backoff.py, the very file the device runs."""
    spec = importlib.util.spec_from_file_location("device_backoff",
                                                  REPO / "firmware" / "backoff.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _per_second(times_s, start, stop):
    bins = [0] * (stop - start)
    for t in times_s:
        if start <= t < stop:
            bins[int(t) - start] += 1
    return bins


def outage(backoff, n=FLEET, outage_s=OUTAGE_S, seed=SEED):
    """Each device's attempts while the broker is down, and its reconnection time."""
    down_attempts, connected = [], []
    back_ms = outage_s * 1000
    for i in range(n):
        policy = backoff.Backoff(rng=backoff.XorShift32(seed + i))
        t = policy.after_loss(connected_ms=policy.stable_ms)  # it had been up for long
        while t < back_ms:
            down_attempts.append(t / 1000)
            t += policy.after_failure()
        connected.append(t / 1000)
    return down_attempts, connected


def naive(n=FLEET, outage_s=OUTAGE_S, every_s=NAIVE_RETRY_S):
    """Fixed-interval retries: every device tries at every multiple of `every_s`."""
    down_attempts = [k * every_s for k in range(1, outage_s // every_s)] * n
    first_up = (outage_s // every_s) * every_s
    if first_up < outage_s:
        first_up += every_s
    return down_attempts, [float(first_up)] * n


def boot(backoff, n=FLEET, seed=SEED):
    """All devices power up at t=0 with the broker up: the first attempt succeeds."""
    return [backoff.Backoff(rng=backoff.XorShift32(seed + n + i)).after_boot() / 1000
            for i in range(n)]


def run(n=FLEET):
    bo = load_backoff()
    cap_s = bo.CAP_MS / 1000
    attempts, connected = outage(bo, n)
    peak = max(_per_second(connected, OUTAGE_S, OUTAGE_S + int(cap_s) + 2)) / n
    delays = [t - OUTAGE_S for t in connected]
    down_rate = _per_second(attempts, 0, OUTAGE_S)
    steady = down_rate[OUTAGE_S // 2:]  # after everyone has reached the cap
    naive_attempts, naive_up = naive(n)
    naive_peak = max(_per_second(naive_up, OUTAGE_S, OUTAGE_S + NAIVE_RETRY_S + 1)) / n
    boot_times = boot(bo, n)
    return {
        "fleet_size": n,
        "fleet_outage_s": OUTAGE_S,
        "fleet_backoff_cap_s": cap_s,
        "fleet_backoff_base_s": bo.BASE_MS / 1000,
        "fleet_initial_window_s": bo.INITIAL_WINDOW_MS / 1000,
        "fleet_peak_connect_fraction": round(peak, 4),
        "fleet_naive_peak_connect_fraction": round(naive_peak, 4),
        "fleet_reconnect_p50_s": round(_percentile(delays, 0.50), 1),
        "fleet_reconnect_p99_s": round(_percentile(delays, 0.99), 1),
        "fleet_reconnect_max_s": round(max(delays), 1),
        "fleet_down_attempts_per_s_peak": max(down_rate),
        "fleet_down_attempts_per_s_steady": round(sum(steady) / len(steady), 1),
        "fleet_naive_down_attempts_per_s": max(_per_second(naive_attempts, 0, OUTAGE_S)),
        "fleet_boot_peak_connect_fraction": round(
            max(_per_second(boot_times, 0, int(bo.INITIAL_WINDOW_MS / 1000) + 1)) / n, 4),
    }


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
