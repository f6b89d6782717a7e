"""Under attack, the owner is not locked out: the login throttle's rules
(tests/device/throttle_rules.py) and httpd's connection slots (tests/device/httpd_slots.py)
on the device runtime. The attacks themselves, against a running device: test_attack.py."""

from tests.host.test_provision import _run_device


def test_throttle_rules_per_address_ceiling_cap_and_presence(tmp_path):
    work = tmp_path / "dev"
    work.mkdir()
    _run_device("throttle_rules.py", [work], {})


def test_connection_slots_evict_strangers_and_keep_the_owner():
    _run_device("httpd_slots.py", [], {})
