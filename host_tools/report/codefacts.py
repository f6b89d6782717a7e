"""Facts read from the project's own code and configuration, for the documents a test lab asks
for (host_tools/report/ixit.py): module-level constants (device modules cannot be imported under
CPython, so they are read from their syntax tree), the HTTP routes the device registers, and
board definitions. Each fact carries where it was read, so a document can cite it."""

import ast
import json
from pathlib import Path

from ..errors import UsageError
from ..mpy import REPO


class Fact:
    """A value and where it came from ("firmware/credentials.py:LOCKOUT_AFTER")."""

    __slots__ = ("value", "source")

    def __init__(self, value, source):
        self.value, self.source = value, source

    def __repr__(self):
        return f"Fact({self.value!r}, {self.source!r})"


_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b, ast.LShift: lambda a, b: a << b}


def _literal(node):
    """A literal, const(literal), or integer arithmetic of literals (5 * 365, 1 << 20)."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "const" and node.args:
        node = node.args[0]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _literal(node.left), _literal(node.right)
        if not all(isinstance(x, int) for x in (left, right)):
            raise ValueError("not integer arithmetic")
        return _OPS[type(node.op)](left, right)
    return ast.literal_eval(node)


def _tree(rel, repo):
    path = Path(repo) / rel
    try:
        return ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError) as e:
        raise UsageError(f"cannot read facts from {path}: {e}") from None


def constants(rel, repo=REPO):
    """{NAME: Fact} of the module-level constants of `rel` (a path under the repository)."""
    out = {}
    for node in _tree(rel, repo).body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target, value = node.targets[0], node.value
        pairs = [(target, value)]
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            pairs = list(zip(target.elts, value.elts, strict=False))  # a, *b = ...: shortest
        for t, v in pairs:
            if isinstance(t, ast.Name):
                try:
                    out[t.id] = Fact(_literal(v), f"{rel}:{t.id}")
                except (ValueError, TypeError, SyntaxError):
                    continue  # not a literal: not a fact
    return out


def const(rel, name, repo=REPO):
    found = constants(rel, repo)
    if name not in found:
        raise UsageError(f"{rel} defines no constant {name}: the document's source moved")
    return found[name]


def routes(repo=REPO):
    """[(method, path, module)] of every `.route("METHOD", "/path", ...)` in firmware/."""
    out = []
    for py in sorted((Path(repo) / "firmware").glob("*.py")):
        rel = py.relative_to(repo).as_posix()
        for node in ast.walk(_tree(rel, repo)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "route" \
                    and len(node.args) >= 2 and all(isinstance(a, ast.Constant)
                                                    for a in node.args[:2]):
                out.append((node.args[0].value, node.args[1].value, rel))
    return out


def board(name, repo=REPO):
    path = Path(repo) / "boards" / name / "board.json"
    try:
        return Fact(json.loads(path.read_text()), f"boards/{name}/board.json")
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None


def boards(repo=REPO):
    return sorted(p.parent.name for p in (Path(repo) / "boards").glob("*/board.json"))
