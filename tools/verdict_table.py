"""docs/FORMAT.md's verdict table, generated from bootloader/verdicts.py (the one table).

    .venv/bin/python tools/verdict_table.py           # rewrite the table in docs/FORMAT.md
    .venv/bin/python tools/verdict_table.py --check   # exit 1 if it is out of date

The device module holds each verdict as `NAME = "NAME"  # meaning`, grouped under a one-line
comment; the meanings are comments so that they cost the device no memory. tests/host/
test_verdicts.py runs the check.
"""

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "bootloader" / "verdicts.py"
DOC = REPO / "docs" / "FORMAT.md"
BEGIN = "<!-- verdicts: generated from bootloader/verdicts.py by tools/verdict_table.py -->"
END = "<!-- end of verdicts -->"
_ENTRY = re.compile(r'^([A-Z][A-Z0-9_]*) = "([^"]*)"  # (\S.*)$')
_GROUP = re.compile(r"^# (\S.*)$")


def parse(text=None):
    """[(group title, [(name, meaning), ...]), ...] in file order: a group is a comment line
    followed by its entries. ValueError on a verdict assigned in another shape, a value that
    is not its name, a name defined twice, or an entry that follows no group comment."""
    text = SOURCE.read_text() if text is None else text
    groups, seen, prev = [], set(), ""
    for n, line in enumerate(text.splitlines(), 1):
        m = _ENTRY.match(line)
        if m:
            name, value, meaning = m.groups()
            if value != name:
                raise ValueError(f"verdicts.py:{n}: {name} must have the value {name!r}")
            if name in seen:
                raise ValueError(f"verdicts.py:{n}: {name} defined twice")
            seen.add(name)
            if _GROUP.match(prev):
                groups.append((_GROUP.match(prev).group(1), []))
            elif not _ENTRY.match(prev):
                raise ValueError(f"verdicts.py:{n}: {name} follows no group comment")
            groups[-1][1].append((name, meaning))
        elif re.match(r"[A-Za-z_]\w* *=", line):
            raise ValueError(f"verdicts.py:{n}: not `NAME = \"NAME\"  # meaning`: {line}")
        prev = line
    return groups


def names(text=None):
    return [name for _title, rows in parse(text) for name, _m in rows]


def render(groups=None):
    groups = parse() if groups is None else groups
    out = [BEGIN]
    for title, rows in groups:
        out += ["", title.rstrip(".") + ":", "", "| Verdict | Meaning |", "|---|---|"]
        out += [f"| `{name}` | {meaning} |" for name, meaning in rows]
    out += ["", END]
    return "\n".join(out)


def updated(doc_text, table):
    """`doc_text` with its generated table replaced by `table`; ValueError without markers."""
    start, end = doc_text.find(BEGIN), doc_text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{DOC.name} has no generated verdict table (markers {BEGIN!r} ...)")
    return doc_text[:start] + table + doc_text[end + len(END):]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check; exit 1 if out of date")
    args = ap.parse_args(argv)
    text = DOC.read_text()
    new = updated(text, render())
    if args.check:
        if new != text:
            print(f"{DOC} is out of date: run tools/verdict_table.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
