"""The Python API of `iotctl`, for factory and release scripts: connect to a device, read
its status, push a signed update and follow it, provision devices. Documented, with
examples that a test runs, in docs/python-api.md.

Every failure is an `iotctl.Error` whose `exit_code` is the code the CLI would exit with
(the table in README.md): `Unreachable`, `IdentityMismatch`, `AuthRefused`, `Refused`
(a verdict such as VERSION_DOWNGRADE or BAD_SIGNATURE), `RolledBack`, ..."""

from dataclasses import dataclass, field

from host_tools import provision as _provision
from host_tools import push as _push
from host_tools.errors import (EXIT_CODES, AuthRefused, DeviceError, IdentityMismatch,
                               IotctlError, KeyFileError, LedgerError, RolledBack, ToolError,
                               Unreachable, UsageError, VerifyError)

Error = IotctlError
Refused = VerifyError  # `.verdict` names the rule (the device's own, or VERSION_DOWNGRADE)

__all__ = ["connect", "status", "push", "provision", "Device", "PushResult", "Provisioned",
           "Error", "Unreachable", "IdentityMismatch", "AuthRefused", "Refused", "RolledBack",
           "DeviceError", "UsageError", "KeyFileError", "LedgerError", "ToolError", "EXIT_CODES"]

Device = _push.Device


def connect(address, password, *, ca=None, pin=None, name=None, timeout=30.0):
    """Log in to the device at "HOST:PORT" and return the session (a `Device`).

    The device is checked against the manufacturer CA (`ca`) or one pinned certificate
    (`pin`), and must be the device `name` (its id, the name on its certificate). Each
    answer is awaited at most `timeout` s. Raises Unreachable, IdentityMismatch or
    AuthRefused at once, so a script knows before it does anything else."""
    dev = Device(address, password, ca=ca, pin=pin, name=name, timeout=timeout)
    dev.login()
    return dev


def status(dev):
    """The device's status document: version, slot, trial, mode, update state, thermostat."""
    return dev.status()


@dataclass
class PushResult:
    """What a push did. `result` is "confirmed", "rolled_back" or "installed" (no wait);
    `change` is "upgrade", "downgrade", "same" or "unknown"."""

    result: str
    from_version: str
    version: str
    change: str
    slot: str
    reason: str = ""
    notes: str = ""
    security_fix: bool = False
    control_max_gap_ms: int = None
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self):
        return self.result in ("confirmed", "installed")


def push(dev, bundle, *, timeout=120.0, wait=True, allow_downgrade=False, progress=None,
         raise_on_rollback=False):
    """Upload the signed `bundle` (a path) to `dev` and, with `wait`, follow the device
    through its restart and self-test until it confirms the new version or rolls back.

    `timeout` bounds the whole push. An app bundle older than the running version is
    refused (Refused, verdict VERSION_DOWNGRADE) unless `allow_downgrade`; whatever the
    device refuses raises Refused with its verdict. A rollback is a result
    (`result == "rolled_back"`, with the device's `reason`), or RolledBack with
    `raise_on_rollback`. `progress(bytes_sent)` is called during the upload."""
    raw = _push.push(dev, bundle, progress=progress, wait=wait, timeout=timeout,
                     allow_downgrade=allow_downgrade)
    result = PushResult(raw["result"], raw["from"], raw.get("version", raw["installed"]),
                        raw.get("change", "unknown"), raw["slot"], raw.get("reason", ""),
                        raw.get("notes") or "", bool(raw.get("security_fix")),
                        raw.get("control_max_gap_ms"), raw)
    if raise_on_rollback and result.result == "rolled_back":
        raise RolledBack(f"the device rolled back to {result.version}: {result.reason}",
                         {"result": raw})
    return result


@dataclass
class Provisioned:
    """One provisioned device as the label printer needs it. The device's private key is
    not here: it went to the target and nowhere else."""

    device_id: str
    password: str = field(repr=False)
    board: str
    model: str
    cert_serial: str
    cert_sha256: str
    setup_url: str
    target: str
    labels: dict
    replaced: str = ""


def provision(keys, *, board, count=1, sim=None, image=None, port=None, labels=None,
              ledger=None, model=_provision.DEFAULT_MODEL, station=None, force=False,
              timeout=_provision.DEFAULT_PORT_TIMEOUT, iterations=_provision.DEFAULT_ITERATIONS,
              cloud=None):
    """Provision `count` devices with the CA and trust anchors in the folder `keys` onto
    one target: `sim` (a simulated board's folder; board "unix"), `image` (a partition
    image path, "{device_id}" replaced) or `port` (a board running MicroPython). Each
    device is entered in the ledger (default keys/ledger.sqlite) and, with `labels`, gets
    a label. A failure leaves no ledger row and no label for the device it stopped at.
    `board` is required: it is written into the record. Returns a list of Provisioned."""
    if sum(t is not None for t in (sim, image, port)) != 1:
        raise UsageError("choose one target: sim, image or port")
    if sim is not None and board != "unix":
        raise UsageError(f"a simulated board is board 'unix', not {board!r}")
    records = _provision.provision(
        keys, count, model=model, board=board, station=station, iterations=iterations,
        ledger=ledger, sim=sim, image=image, port=port, labels=labels, force=force,
        timeout=timeout, cloud=_provision.parse_cloud(cloud) if isinstance(cloud, str) else cloud)
    return [Provisioned(r.device_id, r.password, r.board, r.model, r.cert_serial,
                        r.cert_sha256, r.setup_url, r.target, dict(r.labels), r.replaced)
            for r in records]
