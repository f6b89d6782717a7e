"""The package's own errors; the CLI maps them to messages and exit codes in one place."""


class IotctlError(Exception):
    """Base class: a failure the user can act on. `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(IotctlError):
    """The request itself is wrong (bad option value, missing file)."""

    exit_code = 2


class KeyError_(IotctlError):
    """A key or certificate is missing, unreadable, or would be overwritten."""

    exit_code = 3


class VerifyError(IotctlError):
    """A bundle, image or signature failed verification; `verdict` names the rule."""

    exit_code = 4

    def __init__(self, verdict, detail=""):
        super().__init__(f"{verdict}: {detail}" if detail else verdict)
        self.verdict = verdict
        self.detail = detail


class DeviceError(IotctlError):
    """A device (simulated or real) did not do what was asked."""

    exit_code = 5


class ToolError(IotctlError):
    """An external tool (esptool, espefuse, micropython) failed."""

    exit_code = 6


class RolledBack(IotctlError):
    """The device received the update but its self-test failed and it rolled back."""

    exit_code = 7


class LedgerError(IotctlError):
    """The factory ledger refused a row (a duplicate device id or certificate) or is unusable."""

    exit_code = 8
