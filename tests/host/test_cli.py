"""The `iotctl` surface as a script sees it: help text on every option, one exit-code table
(README, --help, errors.py), JSON errors, the same --board everywhere, the ledger commands,
--force, and clean errors for bad paths."""

import json
import re
import sys
from pathlib import Path

import click
import pytest

from host_tools import ca, cli, flashimage, provision
from host_tools.errors import EXIT_CODES
from host_tools.ledger import Ledger

REPO = Path(__file__).resolve().parents[2]
ITER = 1000


def run(args, capsys):
    """Run `iotctl args`; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def _commands():


    def walk(cmd, path):
        yield path, cmd
        if isinstance(cmd, click.Group):
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(sub, [*path, name])
    return list(walk(cli.cli, []))


# --- help --------------------------------------------------------------------------------

def test_help_of_every_command_has_help_on_every_option(capsys):
    commands = _commands()
    assert len(commands) > 30
    missing = []
    for path, cmd in commands:
        code, out, _ = run([*path, "--help"], capsys)
        assert code == 0 and out.startswith("Usage: iotctl"), (path, out)
        assert cmd.help, f"iotctl {' '.join(path)} has no description"
        for param in cmd.params:
            if not isinstance(param, click.Option) or param.name == "help":
                continue
            if not param.help:
                missing.append(f"iotctl {' '.join(path)} {param.opts[0]}")
            # every option is shown in the help, with its text
            assert param.opts[-1] in out, (path, param.opts)
    assert missing == [], "options without help text: " + ", ".join(missing)


def test_top_level_help_lists_whole_descriptions_and_the_exit_codes(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "..." not in out.split("Commands:")[1]  # no description cut short
    flat = " ".join(out.split())
    for path, cmd in _commands():
        if len(path) == 1:
            first = cmd.help.split("\n\n")[0].split(". ")[0].strip()
            assert " ".join(first.split()) in flat, path
    for exit_code, (name, meaning) in EXIT_CODES.items():
        assert re.search(rf"^\s*{exit_code}\s+{name}\s+{re.escape(meaning)}$", out, re.M), name


def test_readme_has_the_same_exit_code_table():
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (.+?) \|$", readme, re.M)
    assert {int(c): (n, m) for c, n, m in rows} == EXIT_CODES
    assert len(set(EXIT_CODES)) == len(EXIT_CODES)
    # "cannot reach", "identity mismatch" and "authentication refused" are distinct codes
    names = {n: c for c, (n, _) in EXIT_CODES.items()}
    assert len({names["unreachable"], names["identity_mismatch"], names["auth_refused"],
                names["device"]}) == 4


# --- --json: every outcome one object -----------------------------------------------------

@pytest.mark.parametrize("args, code, needle", [
    (["keys", "rotate", "--dir", "{tmp}", "--json"], 3, ""),
    (["inspect", "{tmp}/missing.bin", "--json"], 2, "missing.bin"),
    (["push", "{tmp}/b.bin", "--json"], 2, "--device"),
    (["status", "--device", "127.0.0.1:1", "--password", "x", "--ca", "{tmp}/ca.crt",
      "--json"], 9, "connection refused"),
    (["provision", "--keys", "{tmp}", "--image", "{tmp}/x.bin", "--json"], 2, "--board"),
])
def test_json_errors_are_one_object_on_stdout(args, code, needle, tmp_path, capsys):
    ca.init(tmp_path)
    (tmp_path / "b.bin").write_bytes(b"x")
    got, out, _ = run([a.replace("{tmp}", str(tmp_path)) for a in args], capsys)
    doc = json.loads(out)  # exactly one JSON document, nothing else
    assert got == code and doc["ok"] is False
    assert doc["error"]["code"] == code and doc["error"]["name"] == EXIT_CODES[code][0]
    assert needle in doc["error"]["message"]


# --- --board: one name, one set of choices ------------------------------------------------

def test_board_option_is_the_same_everywhere():
    folders = sorted(p.parent.name for p in (REPO / "boards").glob("*/board.json"))
    assert sorted(flashimage.BOARDS) == folders
    seen = 0
    for path, cmd in _commands():
        for param in cmd.params:
            assert "--chip" not in param.opts, f"iotctl {' '.join(path)} still has --chip"
            if "--board" in param.opts:
                seen += 1
                assert isinstance(param.type, click.Choice), path
                assert set(param.type.choices) <= set(flashimage.BOARDS), path
    assert seen >= 8


def test_provision_needs_board_where_it_is_written(factory, tmp_path, capsys):
    code, _, err = run(["provision", "--keys", factory, "--image", tmp_path / "x.bin",
                        "--labels", tmp_path / "l"], capsys)
    assert code == 2 and "--board is required" in err
    code, _, err = run(["provision", "--keys", factory, "--sim", tmp_path / "s", "--board",
                        "esp32", "--labels", tmp_path / "l"], capsys)
    assert code == 2 and "--sim is a simulated board (unix)" in err
    assert not (tmp_path / "l").exists() and not (tmp_path / "x.bin").exists()
    with Ledger.open(factory / "ledger.sqlite") as lg:
        assert lg.rows() == []
    # written as given: board esp32s3 in the record and the ledger
    code, out, _ = run(["provision", "--keys", factory, "--board", "esp32s3", "--iterations",
                        ITER, "--image", tmp_path / "{device_id}.img", "--json"], capsys)
    rec = json.loads(out)
    assert code == 0 and rec["board"] == "esp32s3"


def test_keys_rotate_defaults_like_keys_init(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(["keys", "init"], capsys)[0] == 0
    code, out, _ = run(["keys", "rotate", "--json"], capsys)
    assert code == 0 and json.loads(out) == {"dir": "keys", "serial": 2}


# --- provisioning: clean path errors, --force, the ledger commands ------------------------

def test_image_path_error_is_a_clean_usage_error(factory, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, out, err = run(["provision", "--keys", factory, "--board", "esp32", "--iterations",
                          ITER, "--image", blocker / "dev.img", "--labels", tmp_path / "l"],
                         capsys)
    assert code == 2 and err.startswith("error: cannot write the image")
    assert "Traceback" not in err
    assert list((tmp_path / "l").iterdir()) == []  # the label went with the failed device
    with Ledger.open(factory / "ledger.sqlite") as lg:
        assert lg.rows() == []
    code, out, _ = run(["provision", "--keys", factory, "--board", "esp32", "--image",
                        tmp_path / "{serial}.img", "--json"], capsys)
    assert code == 2 and "only {device_id}" in json.loads(out)["error"]["message"]


def test_force_marks_the_replaced_device_and_removes_its_label(factory, tmp_path, capsys):
    sim, labels = tmp_path / "sim", tmp_path / "labels"
    code, out, _ = run(["provision", "--keys", factory, "--sim", sim, "--labels", labels,
                        "--iterations", ITER], capsys)
    assert code == 0
    first = out.split()[0]
    serial = provision.Ledger.open(factory / "ledger.sqlite").rows()[0]["cert_serial"]
    assert f"cert serial {serial}" in out  # the certificate's serial, not a hash prefix
    assert sorted(p.name for p in labels.iterdir()) == [f"{first}.pdf", f"{first}.png"]
    code, _, err = run(["provision", "--keys", factory, "--sim", sim, "--labels", labels,
                        "--iterations", ITER], capsys)
    assert code == 5 and "already provisioned" in err
    code, out, _ = run(["provision", "--keys", factory, "--sim", sim, "--labels", labels,
                        "--iterations", ITER, "--force"], capsys)
    second = out.split()[0]
    assert code == 0 and f"replaces {first}" in out
    assert sorted(p.name for p in labels.iterdir()) == [f"{second}.pdf", f"{second}.png"]
    code, out, _ = run(["ledger", "list", "--keys", factory, "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["count"] == 2
    by_id = {r["device_id"]: r for r in doc["devices"]}
    assert by_id[first]["replaced_by"] == second and by_id[second]["replaced_by"] is None
    code, out, _ = run(["ledger", "list", "--keys", factory], capsys)
    assert f"replaced by {second}" in out and "2 device(s)" in out


def test_ledger_export(factory, tmp_path, capsys):
    provision.provision(factory, 2, board="esp32", iterations=ITER)
    out_csv, out_json = tmp_path / "l.csv", tmp_path / "l.json"
    code, out, _ = run(["ledger", "export", "--keys", factory, "-o", out_csv, "--json"], capsys)
    assert code == 0 and json.loads(out)["count"] == 2
    lines = out_csv.read_text().splitlines()
    assert lines[0].split(",")[:2] == ["device_id", "product"] and len(lines) == 3
    assert run(["ledger", "export", "--keys", factory, "-o", out_json, "--format", "json"],
               capsys)[0] == 0
    assert len(json.loads(out_json.read_text())) == 2
    code, _, err = run(["ledger", "export", "--keys", factory, "-o", out_csv], capsys)
    assert code == 2 and "exists" in err
    code, _, err = run(["ledger", "list", "--keys", tmp_path / "nowhere"], capsys)
    assert code == 2 and "no ledger" in err and not (tmp_path / "nowhere").exists()


def test_an_old_ledger_gets_the_replaced_by_column(tmp_path):
    import sqlite3
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE devices (device_id VARCHAR(64) NOT NULL, product VARCHAR(64) "
                 "NOT NULL, model VARCHAR(64) NOT NULL, board VARCHAR(32) NOT NULL, "
                 "cert_serial VARCHAR(40) NOT NULL, cert_sha256 CHAR(64) NOT NULL, "
                 "provisioned BIGINT NOT NULL, station VARCHAR(64) NOT NULL)")
    conn.execute("INSERT INTO devices VALUES ('th-1','p','m','esp32','1','" + "a" * 64 +
                 "',1,'s')")
    conn.commit()
    conn.close()
    with Ledger.open(path) as lg:
        assert lg.rows()[0]["replaced_by"] is None


def test_sigterm_is_mapped_to_143(monkeypatch, capsys):
    """The CLI turns SIGTERM into an exception, so cleanup code runs, then exits 143."""
    import os
    import signal

    @click.command("hang")
    def hang():
        """Wait for a signal."""
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("not interrupted")


    monkeypatch.setitem(cli.cli.commands, "hang", hang)
    code, out, _ = run(["hang"], capsys)
    assert code == 143
    assert signal.getsignal(signal.SIGTERM) is not cli._on_sigterm  # restored afterwards


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))


def test_provision_reports_each_device_as_it_is_done(factory, tmp_path, capsys, monkeypatch):
    """Plain output is not held back to the end of a batch: when the second device is
    made, the first one's line has already been written (and flushed)."""
    real = provision.make_device
    seen_before = []

    def spy(*a, **kw):
        seen_before.append(capsys.readouterr().out)
        return real(*a, **kw)

    monkeypatch.setattr(provision, "make_device", spy)
    code, out, _ = run(["provision", "--keys", factory, "--board", "esp32", "--count", "2",
                        "--iterations", ITER, "--image", tmp_path / "{device_id}.img",
                        "--labels", tmp_path / "l"], capsys)
    assert code == 0 and len(seen_before) == 2
    assert seen_before[0] == "" and re.match(r"th-\w{12}  TH-1  cert serial \w+", seen_before[1])
    assert "1 device" not in seen_before[1] and "2 device(s) provisioned" in out


def test_push_bar_shows_the_average_rate():
    from rich.progress import Progress

    from host_tools.cli.device import AverageSpeed

    with Progress(AverageSpeed(), disable=True) as bar:
        task = bar.add_task("x", total=4_000_000)
        t = bar.tasks[0]
        t.start_time = bar.get_time() - 4.0  # 4 s into the upload
        bar.update(task, completed=2_000_000)
        assert str(AverageSpeed().render(bar.tasks[0])) == "500.0 kB/s"


def test_publish_to_an_unreachable_broker_is_exit_9(factory, tmp_path, capsys):
    import socket

    from host_tools import bundle

    out = tmp_path / "b.bin"
    bundle.build(factory, ["unix"], "1.0.0", 1, out=out, product="iot-thermostat",
                 files={"app.py": b"x = 1\n"}, compile=False)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, stdout, _ = run(["publish", out, "--channel", "stable", "--server",
                           "https://127.0.0.1:1", "--broker", f"127.0.0.1:{port}", "--keys",
                           factory, "--dir", tmp_path / "updates", "--timeout", "3", "--json"],
                          capsys)
    err = json.loads(stdout)["error"]
    assert code == 9 and err["name"] == "unreachable" and "cannot reach the broker" in \
        err["message"]


@pytest.mark.parametrize("old, new, change", [
    ("1.0.0", "1.1.0", "upgrade"), ("2.0.0", "1.0.0", "downgrade"), ("1.2", "1.10", "upgrade"),
    ("1.0.0", "1.0", "same"), ("1.0.0-rc1", "1.0.0", "same"), ("x", "y", "unknown"),
    ("2.0.0", None, "unknown")])
def test_version_change(old, new, change):
    from host_tools.push import version_change

    assert version_change(old, new) == change


def test_an_interrupt_leaves_no_half_made_label_image_or_merged_image(factory, tmp_path,
                                                                     capsys, monkeypatch):
    from host_tools import esp, label
    from tests.fakes.appimage import make_app_image, make_bootloader_image

    # Ctrl-C while the label's PDF is rendered: the PNG already written goes, no image file
    # stays behind, no ledger row is committed
    def interrupted(rec):
        raise KeyboardInterrupt

    monkeypatch.setattr(label, "render_pdf", interrupted)
    code, out, _ = run(["provision", "--keys", factory, "--board", "esp32", "--iterations",
                        ITER, "--image", tmp_path / "img" / "{device_id}.img", "--labels",
                        tmp_path / "labels", "--json"], capsys)
    assert code == 130 and json.loads(out)["error"]["name"] == "interrupted"
    assert list((tmp_path / "labels").iterdir()) == []
    assert not (tmp_path / "img").exists() or list((tmp_path / "img").iterdir()) == []
    with Ledger.open(factory / "ledger.sqlite") as lg:
        assert lg.rows() == []
    # Ctrl-C while esptool writes the merged image: no "production image" is left
    app, boot = tmp_path / "app.bin", tmp_path / "boot.bin"
    app.write_bytes(make_app_image("esp32", "1.24.1", 20_000))
    boot.write_bytes(make_bootloader_image("esp32"))

    def half_written(argv, stream=None, timeout=None):
        Path(argv[argv.index("--output") + 1]).write_bytes(b"\xe9" * 1000)
        raise KeyboardInterrupt

    monkeypatch.setattr(esp.flashing, "run_tool", half_written)
    merged = tmp_path / "production.bin"
    code, _, err = run(["flash", "--board", "esp32", "--firmware", app, "--bootloader", boot,
                        "--merge", "-o", merged], capsys)
    assert code == 130 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir() if "production" in p.name) == []


def test_every_error_class_has_its_own_row_in_the_table():
    """Each error the library raises maps to the table's row of its code, under its name:
    two meanings never share a code (as the report's and the device errors once did)."""
    import importlib
    import pkgutil

    import host_tools
    from host_tools.errors import IotctlError

    for mod in pkgutil.walk_packages(host_tools.__path__, "host_tools."):
        if mod.name not in ("host_tools.sim.supervisor", "host_tools.devscripts.factory_write",
                            "host_tools.devscripts.vectors_runner",
                            "host_tools.devscripts.verify_bundle"):
            importlib.import_module(mod.name)
    seen, todo = [], [IotctlError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    for cls in seen:
        assert cls.exit_code in EXIT_CODES, cls
        assert EXIT_CODES[cls.exit_code][0] == cls.kind, (cls, cls.exit_code, cls.kind)


def test_commands_are_registered_when_the_group_is_imported():
    """A fresh interpreter that only imports the group sees every command: nothing waits
    for main() to register them (the Python API and tests use the group directly)."""
    import subprocess
    import sys

    code = ("import json, pkgutil, importlib, host_tools.cli as c\n"
            "names = sorted(c.cli.commands)\n"
            "mods = [importlib.import_module(f'host_tools.cli.{m.name}')\n"
            "        for m in pkgutil.iter_modules(c.__path__)]\n"
            "want = sorted(cmd.name for m in mods for cmd in m.COMMANDS)\n"
            "print(json.dumps([names, want]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    names, want = json.loads(out)
    assert len(names) > 20 and names == want
