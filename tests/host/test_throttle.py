"""Login throttling under attack (issue: a stranger's failed logins must not lock the owner
out): the throttle's rules on the device runtime (tests/device/throttle_rules.py)."""

from tests.host.test_provision import _run_device


def test_throttle_rules_per_address_ceiling_cap_and_presence(tmp_path):
    work = tmp_path / "dev"
    work.mkdir()
    _run_device("throttle_rules.py", [work], {})
