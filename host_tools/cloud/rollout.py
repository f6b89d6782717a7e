"""Staged rollouts (`iotctl publish --rollout P`, `iotctl rollout ...`): the service's side.

A rollout offers one release to a share of a channel's devices and stops itself when the
release fails on too many of those that tried it (AWS IoT jobs' abort criteria: a failure
rate reached after a minimum count).

- The cohort is deterministic per device: the announcement carries {"id", "below"} and a
  device takes part when SHA-256(id "/" device id), read as a 32-bit big-endian number, is
  below `below` (firmware/pullstate.py). The service picks `below` from the devices it has
  seen on the channel, ranked by that number, so that P % of them are in (rounded down);
  `below` never decreases while a rollout runs, so a device that is in stays in as P grows.
  With no device seen yet, `below` is P % of 2^32.
- Outcomes come from the devices' events (offered, downloading, installed, confirmed,
  rolled_back, refused, failed), fed in by `iotctl monitor`. A failure is a rollback or a
  refusal; a device has tried once it confirmed or failed. When failures reach
  `halt_after` and `halt_failures` % of the devices that tried, the rollout halts: its
  announcement is published again with `below` 0, so that no other device starts it.
- Pause and abort announce `below` 0 as well; `advance` raises P (and resumes a pause).
  Devices already downloading finish; the others never start.

The state lives in SQLite (a file, by default KEYS/service/rollouts.sqlite) or PostgreSQL
(a postgresql:// URL, psycopg installed), in plain SQL that runs on both."""

import hashlib
import json
import time
from pathlib import Path

from .. import sqldb
from ..errors import IotctlError, UsageError

HALT_FAILURES = 20  # percent of the devices that tried
HALT_AFTER = 2  # failures before the rate counts
STATES = ("active", "paused", "halted", "aborted")
FINAL = ("confirmed", "rolled_back", "refused")
FAILED = ("rolled_back", "refused")
OUTCOMES = ("offered", "downloading", "installed", "failed") + FINAL
DB_NAME = "rollouts.sqlite"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS rollouts (
    rollout_id    VARCHAR(40)  NOT NULL,
    product       VARCHAR(64)  NOT NULL,
    channel       VARCHAR(32)  NOT NULL,
    version       VARCHAR(20)  NOT NULL,
    announcement  TEXT         NOT NULL,
    percent       INTEGER      NOT NULL,
    below         BIGINT       NOT NULL,
    state         VARCHAR(10)  NOT NULL,
    halt_failures INTEGER      NOT NULL,
    halt_after    INTEGER      NOT NULL,
    reason        TEXT         NOT NULL,
    created       BIGINT       NOT NULL,
    updated       BIGINT       NOT NULL,
    CONSTRAINT rollouts_pkey PRIMARY KEY (rollout_id)
)""",
    """CREATE TABLE IF NOT EXISTS fleet (
    device_id  VARCHAR(64)  NOT NULL,
    channel    VARCHAR(32)  NOT NULL,
    version    VARCHAR(20)  NOT NULL,
    last_seen  BIGINT       NOT NULL,
    CONSTRAINT fleet_pkey PRIMARY KEY (device_id)
)""",
    """CREATE TABLE IF NOT EXISTS outcomes (
    rollout_id  VARCHAR(40)  NOT NULL,
    device_id   VARCHAR(64)  NOT NULL,
    state       VARCHAR(12)  NOT NULL,
    detail      TEXT         NOT NULL,
    t           BIGINT       NOT NULL,
    CONSTRAINT outcomes_pkey PRIMARY KEY (rollout_id, device_id)
)""")
_COLS = ("rollout_id", "product", "channel", "version", "announcement", "percent", "below",
         "state", "halt_failures", "halt_after", "reason", "created", "updated")


class RolloutError(IotctlError):
    """A rollout cannot do what was asked (unknown, halted, aborted, a lower percentage)."""

    exit_code = 14
    kind = "rollout"


def device_hash(rollout_id, device_id):
    """The number the device compares with `below` (firmware/pullstate.py in_cohort)."""
    return int.from_bytes(hashlib.sha256(f"{rollout_id}/{device_id}".encode()).digest()[:4],
                          "big")


def bound(rollout_id, percent, devices, floor=0):
    """`below` that admits floor(percent * len(devices) / 100) of `devices` (ranked by
    device_hash), never less than `floor`; percent of 2^32 when no device is known."""
    if not 0 <= percent <= 100:
        raise UsageError("a rollout percentage is 0 to 100")
    if percent == 100:
        return 1 << 32
    if not devices:
        return max(floor, (percent << 32) // 100)
    ranked = sorted(device_hash(rollout_id, d) for d in devices)
    k = percent * len(ranked) // 100
    b = ranked[k - 1] + 1 if k else 0
    return max(floor, b)


def check_percent(p):
    if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 100:
        raise UsageError(f"--rollout must be a whole percentage from 1 to 100, got {p!r}")
    return p


def check_halt(halt_failures, halt_after):
    if isinstance(halt_failures, bool) or not isinstance(halt_failures, int) \
            or not 1 <= halt_failures <= 100:
        raise UsageError("--halt-failures is a percentage from 1 to 100")
    if isinstance(halt_after, bool) or not isinstance(halt_after, int) or halt_after < 1:
        raise UsageError("--halt-after must be at least 1")


def default_db(keys_dir):
    return Path(keys_dir) / "service" / DB_NAME


class Store(sqldb.Store):
    """The rollouts, the fleet as the service has seen it, and each device's last outcome."""

    WHAT = "the rollout store"
    FAIL = RolloutError

    def __init__(self, conn, paramstyle, errors):
        self.conn = conn
        self._ph = "?" if paramstyle == "qmark" else "%s"
        self._errors = errors
        cur = conn.cursor()
        for stmt in SCHEMA:
            cur.execute(stmt)
        conn.commit()

    def _exec(self, sql, args=(), commit=True):
        cur = self.conn.cursor()
        try:
            cur.execute(sql.replace("?", self._ph), args)
        except self._errors as e:
            self.conn.rollback()
            raise RolloutError(f"rollout store: {e}") from None
        if commit:
            self.conn.commit()
        return cur

    # --- rollouts --------------------------------------------------------------------------

    def create(self, announcement, product, channel, percent, halt_failures=HALT_FAILURES,
               halt_after=HALT_AFTER, now=None):
        """A new rollout of `announcement` (the channel's announcement without "rollout")
        to `percent` of the channel. Returns the rollout (a dict)."""
        check_percent(percent)
        check_halt(halt_failures, halt_after)
        now = int(time.time() if now is None else now)
        rid = f"{product}-{announcement['version']}-{announcement['sha256'][:8]}"
        if self.get(rid, missing_ok=True):
            raise RolloutError(f"rollout {rid} exists; use `iotctl rollout advance {rid}`")
        below = bound(rid, percent, self.fleet(channel))
        self._exec(f"INSERT INTO rollouts ({', '.join(_COLS)}) VALUES "
                   f"({', '.join('?' * len(_COLS))})",
                   (rid, product, channel, announcement["version"],
                    json.dumps(announcement, sort_keys=True), percent, below, "active",
                    halt_failures, halt_after, "", now, now))
        return self.get(rid)

    def get(self, rid, missing_ok=False):
        cur = self._exec(f"SELECT {', '.join(_COLS)} FROM rollouts WHERE rollout_id = ?",
                         (rid,), commit=False)
        row = cur.fetchone()
        if row is None:
            if missing_ok:
                return None
            raise RolloutError(f"no rollout {rid!r} (iotctl rollout status lists them)")
        r = dict(zip(_COLS, row, strict=True))
        r["announcement"] = json.loads(r["announcement"])
        return r

    def all(self):
        cur = self._exec("SELECT rollout_id FROM rollouts ORDER BY created, rollout_id",
                         commit=False)
        return [self.get(r[0]) for r in cur.fetchall()]

    def _update(self, rid, now=None, **fields):
        fields["updated"] = int(time.time() if now is None else now)
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._exec(f"UPDATE rollouts SET {sets} WHERE rollout_id = ?",
                   tuple(fields.values()) + (rid,))
        return self.get(rid)

    def advance(self, rid, percent, now=None):
        """Raise the share to `percent` (or resume a paused rollout at its share)."""
        r = self.get(rid)
        check_percent(percent)
        if r["state"] in ("halted", "aborted"):
            raise RolloutError(f"rollout {rid} is {r['state']}"
                               + (f" ({r['reason']})" if r["reason"] else "")
                               + "; publish a fixed release as a new rollout")
        if percent < r["percent"]:
            raise RolloutError(f"rollout {rid} is at {r['percent']} %; a rollout never shrinks "
                               "(pause or abort it)")
        below = bound(rid, percent, self.fleet(r["channel"]), r["below"])
        return self._update(rid, now, percent=percent, below=below, state="active", reason="")

    def delete(self, rid):
        """Forget a rollout whose announcement could not be sent (publish undoes create)."""
        self._exec("DELETE FROM outcomes WHERE rollout_id = ?", (rid,))
        self._exec("DELETE FROM rollouts WHERE rollout_id = ?", (rid,))

    def pause(self, rid, now=None):
        r = self.get(rid)
        if r["state"] != "active":
            raise RolloutError(f"rollout {rid} is {r['state']}, not active")
        return self._update(rid, now, state="paused", reason="paused by the operator")

    def abort(self, rid, now=None):
        r = self.get(rid)
        if r["state"] == "aborted":
            raise RolloutError(f"rollout {rid} is already aborted")
        return self._update(rid, now, state="aborted", reason="aborted by the operator")

    # --- the announcement -----------------------------------------------------------------

    @staticmethod
    def announcement(r):
        """The channel's announcement for rollout `r`: only an active rollout admits
        devices."""
        doc = dict(r["announcement"])
        doc["rollout"] = {"id": r["rollout_id"],
                          "below": r["below"] if r["state"] == "active" else 0}
        return doc

    @staticmethod
    def topic(r):
        return f"fleet/{r['product']}/{r['channel']}"

    # --- what devices report --------------------------------------------------------------

    def fleet(self, channel):
        cur = self._exec("SELECT device_id FROM fleet WHERE channel = ? ORDER BY device_id",
                         (channel,), commit=False)
        return [r[0] for r in cur.fetchall()]

    def seen(self, device_id, state, now=None):
        """A device's retained state ({"online", "version", "channel"}): the fleet."""
        channel, version = state.get("channel"), state.get("version")
        if not isinstance(channel, str) or not isinstance(version, str):
            return
        now = int(time.time() if now is None else now)
        self._exec("INSERT INTO fleet (device_id, channel, version, last_seen) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
                   "channel = excluded.channel, version = excluded.version, "
                   "last_seen = excluded.last_seen", (device_id, channel[:32], version[:20], now))

    def outcome(self, device_id, event, now=None):
        """An update event from `device_id`. Returns the rollout if this event halted it."""
        rid, state = event.get("rollout"), event.get("state")
        if not isinstance(rid, str) or state not in OUTCOMES:
            return None
        r = self.get(rid, missing_ok=True)
        if r is None:
            return None
        detail = event.get("reason") or event.get("verdict") or event.get("error") or ""
        if state == "downloading" and isinstance(event.get("progress"), int):
            detail = f"{event['progress']} %"
        now = int(time.time() if now is None else now)
        self._exec("INSERT INTO outcomes (rollout_id, device_id, state, detail, t) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (rollout_id, device_id) DO UPDATE SET "
                   "state = excluded.state, detail = excluded.detail, t = excluded.t",
                   (rid, device_id, state, str(detail)[:200], now))
        if r["state"] != "active":
            return None
        counts = self.counts(rid)
        failures = sum(counts.get(s, 0) for s in FAILED)
        tried = sum(counts.get(s, 0) for s in FINAL)
        if failures >= r["halt_after"] and failures * 100 >= r["halt_failures"] * tried:
            return self._update(rid, now, state="halted", reason=(
                f"{failures} of {tried} devices that tried failed (halt at "
                f"{r['halt_failures']} % after {r['halt_after']})"))
        return None

    def outcomes(self, rid):
        cur = self._exec("SELECT device_id, state, detail, t FROM outcomes WHERE rollout_id = ? "
                         "ORDER BY device_id", (rid,), commit=False)
        return {d: {"state": s, "detail": x, "t": t} for d, s, x, t in cur.fetchall()}

    def counts(self, rid):
        out = {}
        for o in self.outcomes(rid).values():
            out[o["state"]] = out.get(o["state"], 0) + 1
        return out

    def status(self, rid):
        """A rollout with its fleet size, admitted count and outcomes (for status/monitor)."""
        r = self.get(rid)
        fleet = self.fleet(r["channel"])
        outcomes = self.outcomes(rid)
        counts = self.counts(rid)
        return {"rollout": rid, "version": r["version"], "channel": r["channel"],
                "state": r["state"], "reason": r["reason"], "percent": r["percent"],
                "below": r["below"], "halt_failures": r["halt_failures"],
                "halt_after": r["halt_after"], "fleet": len(fleet),
                "admitted": sum(device_hash(rid, d) < r["below"] for d in fleet),
                "counts": counts, "failures": sum(counts.get(s, 0) for s in FAILED),
                "tried": sum(counts.get(s, 0) for s in FINAL), "devices": outcomes}


def announce(store, keys_dir, broker, r):
    """Publish rollout `r`'s announcement (retained) as the service."""
    from .updateserver import announce as send

    send(keys_dir, broker, store.topic(r), store.announcement(r))
    return r
