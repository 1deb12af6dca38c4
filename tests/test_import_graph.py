"""Package-wide checks: the import graph (no cycles, only ``emoboost.cli`` imports the command line) and
module size (no module over 500 lines).

Every import statement of every module counts, the ones inside functions too (a lazy import is still a
dependency), so the layers of CONTRIBUTING.md's layout hold whatever the import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import emoboost

PACKAGE = Path(emoboost.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The emoboost modules ``path`` imports (``from a import b`` counts ``a.b`` when that is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parent + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    out = set()
    for m in found:
        while m and m not in modules:  # a name inside a module -> the module
            m = m.rpartition(".")[0]
        if m and m != name and m != "emoboost":
            out.add(m)
    return out


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, modules) for f in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_only_the_command_line_imports_the_command_line():
    offenders = {m: sorted(d for d in deps if d == "emoboost.cli" or d.startswith("emoboost.cli."))
                 for m, deps in import_graph().items() if not (m == "emoboost.cli" or m.startswith("emoboost.cli."))}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_no_test_module_imports_another():
    """Shared builders live in tests/builders.py; a test module importing another couples their fixtures."""
    tests = Path(__file__).resolve().parent
    names = {f.stem for f in tests.rglob("test_*.py")}
    offenders = {}
    for f in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), str(f))):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bad = [m for m in mods if m.split(".")[0] in names]
            if bad:
                offenders[str(f.relative_to(tests))] = bad
    assert offenders == {}


MAX_LINES = 500


def test_no_module_exceeds_500_lines():
    """Modules stay readable in one sitting: a module that outgrows this is split by concern."""
    long = {str(f.relative_to(PACKAGE.parent)): n for f in sorted(PACKAGE.rglob("*.py"))
            if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
