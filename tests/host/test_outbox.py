"""The cloud link's outbox (firmware/outbox.py) under power loss: cut the power at every flash
program and erase of a scenario of puts past the capacity, deliveries and a purge; after each
cut nothing acknowledged is lost or altered, the order holds and seqs never go back."""

import json

from host_tools import mpy

SCRIPT = mpy.REPO / "tests" / "device" / "outbox_powercut.py"


def test_every_cut_point_keeps_what_was_acknowledged(tmp_path):
    work = tmp_path / "flash.bin"
    work.write_bytes(b"\xff" * (256 * 1024))
    table = tmp_path / "table.csv"
    table.write_text("# name, type, subtype, offset, size\nvfs, data, fat, 0x0, 256K\n")
    proc = mpy.run(SCRIPT, [work, table], extra_path=[mpy.REPO / "firmware"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\noutbox power-loss sweep: {result['cut_points']} cut points, torn {result['torn']}")
    assert result["cut_points"] > 150
    assert result["failures"] == []
    assert result["torn"]["put"] and result["torn"]["remove"] and result["torn"]["purge"]
