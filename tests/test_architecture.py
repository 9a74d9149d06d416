"""The layout's rules, checked on the source: one-way dependencies and no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "genre_agent"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = ["genre_agent", *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    # rglob does not follow the symlinked folders (retrievers, eval, prompts): walk them.
    out: dict[str, Path] = {}
    for path in sorted(PKG.glob("**/*.py")) + sorted(
        p for d in ("retrievers", "eval", "prompts") for p in (PKG / d).glob("**/*.py")
    ):
        out[_module_name(path)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """First-party modules imported anywhere in the file (function-level imports too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + [base])
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in modules:
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _is_package_init(name: str, graph: dict[str, set[str]]) -> bool:
    return any(other.startswith(name + ".") for other in graph)


def test_the_core_imports_nothing_from_the_harness():
    graph = _graph()
    bad = {
        m: sorted(t for t in deps if t.startswith("genre_agent.eval"))
        for m, deps in graph.items()
        if not m.startswith("genre_agent.eval")
    }
    assert not {m: d for m, d in bad.items() if d}


def test_no_first_party_import_cycle():
    """No module reaches itself through imports. A package's ``__init__`` re-exporting its own
    submodules is not a cycle (Python imports the package first), so edges from a package
    to its own submodules are left out."""
    graph = _graph()
    edges = {
        m: {t for t in deps if not (t.startswith(m + ".") and _is_package_init(m, graph))}
        for m, deps in graph.items()
    }
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cli_layer_is_the_only_one_that_imports_typer_or_rich():
    graph_files = _modules()
    offenders = []
    for name, path in graph_files.items():
        if name.startswith(("genre_agent.cli", "genre_agent.eval.cli")):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            if any(m.split(".")[0] in {"typer", "rich"} for m in mods):
                offenders.append(name)
    assert not offenders, offenders
