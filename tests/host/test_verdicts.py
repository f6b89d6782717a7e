"""The verdict table (bootloader/verdicts.py): one home for every verdict the device gives.

- docs/FORMAT.md's table is the one generated from it (tools/verdict_table.py);
- the table's shape: every name's value is the name, each with a meaning, none twice, and the
  parser sees exactly the names the module defines;
- device code (bootloader/, firmware/, boards/) raises, compares and reports verdicts through
  the table's names: no verdict literal, no Reject with a literal, no name outside the table;
- every verdict in the table is used by some device module (no dead entries).
"""

import ast
import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import verdict_table  # noqa: E402

DEVICE_DIRS = ("bootloader", "firmware", "boards")
TABLE = REPO / "bootloader" / "verdicts.py"


def device_sources():
    for d in DEVICE_DIRS:
        for p in sorted((REPO / d).rglob("*.py")):
            if p != TABLE and p.name != "manifest.py":
                yield p


def misuses(source, names):
    """Places in `source` where a verdict bypasses the table: (line, what)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value in names:
            found.append((node.lineno, f"literal {node.value!r}"))
        if _table_name(node) and node.attr not in names:
            found.append((node.lineno, f"verdicts.{node.attr}: not in verdicts.py"))
        if isinstance(node, ast.Call):
            f = node.func
            fname = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
            if fname == "Reject" and node.args:
                a = node.args[0]
                if isinstance(a, ast.Constant):
                    found.append((node.lineno, f"Reject({a.value!r}) with a literal"))
                elif isinstance(a, ast.Name):
                    found.append((node.lineno, f"Reject({a.id}): not a verdicts.NAME"))
    return found


def _table_name(node):
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
        and node.value.id == "verdicts"


def test_format_md_table_is_generated_from_the_device_table():
    doc = verdict_table.DOC.read_text()
    assert verdict_table.updated(doc, verdict_table.render()) == doc, \
        "docs/FORMAT.md's verdict table is out of date: run tools/verdict_table.py"
    for name in verdict_table.names():
        assert f"| `{name}` |" in doc


def test_table_shape_and_parser_agree_with_the_module():
    names = verdict_table.names()
    defined = {k: v for k, v in runpy.run_path(str(TABLE)).items() if not k.startswith("__")}
    assert sorted(names) == sorted(defined)
    assert all(defined[n] == n for n in names)
    assert len(names) == len(set(names)) >= 30
    assert all(meaning for _t, rows in verdict_table.parse() for _n, meaning in rows)
    # the list: the ones FORMAT.md missed before are in the table now
    for n in ("EXTRA_FILE", "BUSY", "NO_RECORD", "BAD_IMAGE", "IMAGE_REFUSED", "BAD_HASH"):
        assert n in names


@pytest.mark.parametrize("bad, why", [
    ('# g\nBUSY = "BUSY"  # a\nBUSY = "BUSY"  # b\n', "defined twice"),
    ('# g\nBUSY = "BUZY"  # a\n', "must have the value"),
    ('# g\nBUSY = "BUSY"\n', "not `NAME"),
    ('\nBUSY = "BUSY"  # a\n', "follows no group comment"),
])
def test_parser_refuses_a_malformed_table(bad, why):
    with pytest.raises(ValueError, match=why):
        verdict_table.parse(bad)


def test_device_code_uses_the_table_names():
    names = set(verdict_table.names())
    bad = []
    for p in device_sources():
        bad += [f"{p.relative_to(REPO)}:{line}: {what}"
                for line, what in misuses(p.read_text(), names)]
    assert not bad, "\n".join(bad)


def test_the_check_catches_literals_and_unknown_names():
    names = {"BUSY"}
    src = ('raise Reject("BUSY", "x")\nif e.verdict == "BUSY": pass\n'
           'raise Reject(BUSY, "y")\nraise Reject("NEW_TWO")\n'
           'raise Reject(verdicts.NEW_THREE)\nraise Reject(verdicts.BUSY, "fine")\n')
    lines = sorted(misuses(src, names))
    assert [ln for ln, _w in lines] == [1, 1, 2, 3, 4, 5]


def test_every_verdict_is_used_by_the_device():
    used = set()
    for p in device_sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if _table_name(node):  # raised, compared or reported
                used.add(node.attr)
    unused = [n for n in verdict_table.names() if n not in used]
    assert not unused, f"in verdicts.py but raised nowhere: {unused}"
