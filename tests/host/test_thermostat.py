"""The thermostat's control logic, run on the device runtime with a scripted sensor."""

from host_tools import mpy

SCRIPT = mpy.REPO / "tests" / "device" / "thermostat_logic.py"


def test_control_schedule_validation_and_sensor_failure(tmp_path):
    proc = mpy.run(SCRIPT, [mpy.REPO / "firmware", tmp_path], extra_path=[mpy.REPO / "firmware"])
    assert proc.returncode == 0 and "THERMOSTAT-OK" in proc.stdout, proc.stdout + proc.stderr
