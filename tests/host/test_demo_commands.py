"""The demo prints, for each step, iotctl commands that can be copied and run from the
repository root: they parse, name every file under demo-out/, carry what a device needs
(--ca and --name), and the first steps' commands do run."""

import json
import shlex

import click
import pytest

from host_tools import cli, demo


def _resolve(argv):
    """Parse argv as `iotctl` would (a usage error raises); the command's context."""

    cmd, rest = cli.cli, list(argv)
    while isinstance(cmd, click.Group):
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    return cmd.make_context(cmd.name, rest)


def test_every_printed_command_parses_and_stays_in_demo_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what the demo leaves in demo-out/, for the path checks
    for path in demo.paths("demo-out").values():
        if path.suffix == ".bin":
            path.write_bytes(b"")
        else:
            path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "demo-out" / "keys" / "ca.crt").write_bytes(b"")
    steps = demo.commands("demo-out", "127.0.0.1:8443", "th-0123456789ab")
    assert sorted(steps) == list(range(1, 10))  # steps 5-9 show commands too
    for step, cmds in steps.items():
        assert cmds, step
        for argv in cmds:
            assert shlex.split(shlex.join(argv)) == argv
            params = _resolve(argv).params
            for token in argv:
                if "/" in token or token.endswith(".bin"):
                    assert token.startswith("demo-out/"), (step, argv)
            if argv[0] in ("push", "status"):
                assert params["ca"] == "demo-out/keys/ca.crt" and \
                    params["name"] == "th-0123456789ab" and params["device"] == "127.0.0.1:8443"
    pushed = [argv[1] for cmds in steps.values() for argv in cmds if argv[0] == "push"]
    assert pushed[0] == "demo-out/app-1.1.0.bin"


def test_the_first_steps_run_from_the_repository_root(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # stands for the repository root: demo-out/ is relative
    steps = demo.commands("demo-out")
    for argv in steps[1] + steps[2]:
        with pytest.raises(SystemExit) as e:
            cli.main(argv + (["--json"] if argv[0] == "inspect" else []))
        assert e.value.code == 0, argv
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["verdict"]["verdict"] == "OK"
    assert (tmp_path / "demo-out" / "app-1.0.0.bin").is_file()
