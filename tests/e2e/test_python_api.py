"""docs/python-api.md is true: its examples run, in order, against a simulated device."""

import re
import shutil
from pathlib import Path

from host_tools import bundle

DOC = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"


def test_python_api_examples_run(app_device, keydir, bundles, tmp_path, monkeypatch, capsys):
    d, dev, info = app_device
    work = tmp_path / "work"
    shutil.copytree(keydir, work / "keys")
    shutil.copyfile(bundles["v1"], work / "app-1.0.0.bin")
    bundle.build(keydir, ["unix"], "1.1.0", 1, out=work / "app-1.1.0.bin", notes="1.1.0")
    monkeypatch.chdir(work)
    from host_tools import sim

    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.M | re.S)
    assert len(blocks) >= 3
    scope = {"ADDRESS": sim.https_address(d), "DEVICE_ID": info["device_id"],
             "PASSWORD": info["password"]}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{DOC.name} example {i + 1}", "exec"), scope)  # noqa: S102
    out = capsys.readouterr().out
    assert "confirmed 1.0.0 -> 1.1.0 upgrade" in out
    assert "VERSION_DOWNGRADE 4" in out and "refused:" in out
    assert len(list((work / "images").iterdir())) == 2
    assert len(list((work / "labels").iterdir())) == 4
    assert dev.status()["version"] == "1.1.0"
