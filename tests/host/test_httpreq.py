"""A request body on the device runtime (tests/device/httpreq_body.py): bytes the connection
already holds are read without a turn of the event loop, and the body's bounds still hold."""

from tests.host.test_provision import _run_device


def test_body_reads_take_queued_bytes_at_once_and_keep_their_bounds():
    _run_device("httpreq_body.py", [], {})
