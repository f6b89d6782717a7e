"""The owner mark (bootloader/marks.py) on the NOR model: carry-overs, a power cut at every
operation in every tear shape with a second cut during the recovery, bit flips at rest, and
no program over bits that were not erased (tests/device/marks_nor.py)."""

from host_tools import mpy

DEVICE = mpy.REPO / "tests" / "device"


def test_marks_survive_cuts_flips_and_carry_overs(tmp_path):
    proc = mpy.run(DEVICE / "marks_nor.py", [tmp_path], timeout=900)
    out = proc.stdout
    assert proc.returncode == 0 and out.strip().splitlines()[-1:] == ["OK"], \
        out[-3000:] + proc.stderr[-3000:]
    lines = [ln for ln in out.splitlines() if ln.startswith("marks: cuts")]
    assert len(lines) == 3
    for ln in lines:
        ops, states, seconds = (int(w) for w in ln.split(": ")[2].split()[0:5:2])
        assert ops >= 5 and states >= 3 * ops and seconds > 0
    assert "65536 flips at rest (open, odd)" in out


def test_lost_owner_record_is_never_the_label_password(tmp_path):
    """credentials.py with the mark (tests/device/credentials_mark.py): both copies removed
    behind its back -> RECORD_LOST; reset -> label; change after reset; migration; a cut at
    every operation of a change and of a reset."""
    proc = mpy.run(DEVICE / "credentials_mark.py", [tmp_path], extra_path=[mpy.REPO / "firmware"],
                   timeout=900)
    out = proc.stdout
    assert proc.returncode == 0 and out.strip().splitlines()[-1:] == ["OK"], \
        out[-3000:] + proc.stderr[-3000:]
    assert "mark: lost record -> RECORD_LOST" in out and "mark: migration" in out
