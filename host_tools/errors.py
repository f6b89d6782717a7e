"""The package's own errors; the CLI maps them to messages and exit codes in one place.

EXIT_CODES is the one table of `iotctl`'s exit codes: `iotctl --help` prints it and the
README repeats it (a test keeps the three in step)."""


class IotctlError(Exception):
    """Base class: a failure the user can act on. `exit_code` is what the CLI returns.
    `details` (a dict) goes into the JSON error object beside the code and message."""

    exit_code = 1
    kind = "failed"

    def __init__(self, message="", details=None):
        super().__init__(message)
        self.details = dict(details or {})


class UsageError(IotctlError):
    """The request itself is wrong (bad option value, missing file)."""

    exit_code = 2
    kind = "usage"


class KeyFileError(IotctlError):
    """A key or certificate is missing, unreadable, or would be overwritten."""

    exit_code = 3
    kind = "keys"


class VerifyError(IotctlError):
    """A bundle, image or signature failed verification; `verdict` names the rule."""

    exit_code = 4
    kind = "verify"

    def __init__(self, verdict, detail="", details=None):
        super().__init__(f"{verdict}: {detail}" if detail else verdict,
                         {"verdict": verdict, **(details or {})})
        self.verdict = verdict
        self.detail = detail


class DeviceError(IotctlError):
    """A device (simulated or real) was reached but did not do what was asked."""

    exit_code = 5
    kind = "device"


class ToolError(IotctlError):
    """An external tool (esptool, espefuse, micropython) failed."""

    exit_code = 6
    kind = "tool"


class RolledBack(IotctlError):
    """The device received the update but its self-test failed and it rolled back."""

    exit_code = 7
    kind = "rolled_back"


class LedgerError(IotctlError):
    """The factory ledger refused a row (a duplicate device id or certificate) or is unusable."""

    exit_code = 8
    kind = "ledger"


class Unreachable(DeviceError):
    """The device could not be reached, or did not answer in time: connection refused, no
    route, time-out, or a serial port where no MicroPython REPL answers."""

    exit_code = 9
    kind = "unreachable"


class IdentityMismatch(DeviceError):
    """Something answered, but it is not the device asked for: its certificate is not
    issued by the given CA, does not match the pin, or names another device."""

    exit_code = 10
    kind = "identity_mismatch"


class AuthRefused(DeviceError):
    """The device refused the password (wrong, or the login is throttled or locked out)."""

    exit_code = 11
    kind = "auth_refused"


# exit code -> (name, meaning). 130 and 143 are the shell's conventions for SIGINT/SIGTERM.
EXIT_CODES = {
    0: ("ok", "success"),
    1: ("failed", "any other failure"),
    2: ("usage", "bad command line, option value or input file"),
    3: ("keys", "a key or certificate is missing, unreadable or would be overwritten"),
    4: ("verify", "a bundle, image or signature is refused (the verdict names the rule)"),
    5: ("device", "the device was reached but refused or failed the request"),
    6: ("tool", "an external tool (esptool, espefuse, micropython) failed"),
    7: ("rolled_back", "the update was installed, its self-test failed and it rolled back"),
    8: ("ledger", "the factory ledger refused the record or cannot be used"),
    9: ("unreachable", "cannot reach the device, or it did not answer in time"),
    10: ("identity_mismatch", "the device's certificate is untrusted or names another device"),
    11: ("auth_refused", "the device refused the password (wrong, throttled or locked out)"),
    12: ("evidence_failed", "report: a claimed provision has no passing evidence in the run"),
    13: ("advisory", "advisories: a published advisory affects a component of the SBOM"),
    14: ("rollout", "rollout: unknown, halted or aborted, or a change it cannot make"),
    130: ("interrupted", "interrupted (Ctrl-C); nothing half-made is kept"),
    143: ("terminated", "terminated (SIGTERM); nothing half-made is kept"),
}


def exit_code_table(indent=""):
    """The exit-code table as aligned text lines (for --help and the README)."""
    return "\n".join(f"{indent}{code:>3}  {name:<18} {meaning}"
                     for code, (name, meaning) in EXIT_CODES.items())
