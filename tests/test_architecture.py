"""The layout's rules, checked on the source: one-way dependencies and no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "genre_agent"
# Each first-party package and the folder that holds it: no symlinks, so the file path and the
# import path agree for every tool.
PACKAGES = {
    "genre_agent": PKG,
    "retrievers": ROOT / "retrievers",
    "genre_eval": ROOT / "eval" / "genre_eval",
}


def _module_name(path: Path) -> str:
    for top, folder in PACKAGES.items():
        if path.is_relative_to(folder):
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join(parts)
    raise AssertionError(f"{path} is in no first-party package")


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for folder in PACKAGES.values()
        for path in sorted(folder.glob("**/*.py"))
    }


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
        m: sorted(t for t in deps if t.startswith("genre_eval"))
        for m, deps in graph.items()
        if not m.startswith("genre_eval")
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
        if name.startswith(("genre_agent.cli", "genre_eval.cli")):
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


# -- size limits ------------------------------------------------------------------------------
# A module past MAX_MODULE_LINES asks to be split by role; a function past MAX_FUNCTION_LINES
# to be split into named steps (STYLE.md 5). Checked in genre_agent/, eval/ and retrievers/.
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
# Offenders allowed over the limits, each capped at its size: an entry may shrink, never
# grow, and must leave this table once it is within the limit. Issue 20 emptied it.
KNOWN_OVERSIZE: dict[str, int] = {}


def _first_party_sources(tree_root: Path = ROOT) -> list[Path]:
    """The first-party .py files as a clone has them: no symlinks, no build/ or dist/ copies
    that `pip install` leaves behind."""
    out = []
    for folder in ("genre_agent", "eval", "retrievers"):
        for path in sorted((tree_root / folder).rglob("*.py")):
            rel = path.relative_to(tree_root)
            if {"build", "dist"} & set(rel.parts) or any(
                p.is_symlink() for p in [path, *path.parents]
            ):
                continue
            out.append(path)
    return out


def _sizes(tree_root: Path = ROOT) -> dict[str, int]:
    """Every module's line count and every function's (qualified by its classes and
    enclosing functions), for the first-party folders."""
    out: dict[str, int] = {}
    for path in _first_party_sources(tree_root):
        rel = path.relative_to(tree_root)
        src = path.read_text(encoding="utf-8")
        out[str(rel)] = len(src.splitlines())
        _functions(ast.parse(src), str(rel), "", out)
    return out


def _own_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines without the functions defined inside it, which are measured on
    their own (a FastAPI router builder is a list of route functions, not one long one)."""
    assert fn.end_lineno is not None
    total = fn.end_lineno - fn.lineno + 1
    for inner in ast.walk(fn):
        if inner is not fn and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not any(
                outer is not fn
                and outer is not inner
                and isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef))
                and inner in ast.walk(outer)
                for outer in ast.walk(fn)
            ):
                assert inner.end_lineno is not None
                start = min([inner.lineno, *(d.lineno for d in inner.decorator_list)])
                total -= inner.end_lineno - start + 1
    return total


def _functions(node: ast.AST, rel: str, prefix: str, out: dict[str, int]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                out[f"{rel}::{name}"] = _own_lines(child)
            _functions(child, rel, f"{name}.", out)
        else:
            _functions(child, rel, prefix, out)


def _over(sizes: dict[str, int]) -> dict[str, int]:
    return {
        k: n
        for k, n in sizes.items()
        if n > (MAX_FUNCTION_LINES if "::" in k else MAX_MODULE_LINES)
    }


def test_no_module_or_function_grows_past_the_size_limits():
    over = _over(_sizes())
    new = {k: n for k, n in over.items() if k not in KNOWN_OVERSIZE}
    grown = {k: (n, KNOWN_OVERSIZE[k]) for k, n in over.items() if n > KNOWN_OVERSIZE.get(k, n)}
    fixed = sorted(k for k in KNOWN_OVERSIZE if k not in over)
    assert not new, (
        f"over the limits ({MAX_MODULE_LINES} lines a module, {MAX_FUNCTION_LINES} a function): {new}"
    )
    assert not grown, f"known offenders that grew (now, cap): {grown}"
    assert not fixed, f"within the limits now: remove from KNOWN_OVERSIZE: {fixed}"


def test_the_size_check_catches_a_long_function_and_a_long_module(tmp_path: Path):
    pkg = tmp_path / "genre_agent"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    (pkg / "long.py").write_text(
        f"class A:\n    def f(self):\n{body.replace('    ', '        ')}\n"
    )
    (pkg / "big.py").write_text("\n".join(f"y{i} = {i}" for i in range(451)) + "\n")
    (pkg / "ok.py").write_text("def g():\n    return 1\n")
    over = _over(_sizes(tmp_path))
    assert over == {"genre_agent/long.py::A.f": 62, "genre_agent/big.py": 451}


def test_the_recommender_is_a_thin_facade():
    src = (PKG / "service" / "recommender.py").read_text(encoding="utf-8")
    assert len(src.splitlines()) <= 200


def test_no_module_imports_another_modules_private_names():
    """``from x import _name`` of a first-party module (tests excepted) is a private seam."""
    offenders = []
    for path in _first_party_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(tuple(PACKAGES)):
                bad = [
                    a.name
                    for a in node.names
                    if a.name.startswith("_") and not a.name.endswith("__")
                ]
                if bad:
                    offenders.append(f"{path.relative_to(ROOT)}: {node.module} {bad}")
    assert not offenders, offenders


def test_no_mode_name_is_compared_outside_the_ranker_table():
    """Every mode is a RANKERS entry that declares its needs; nothing else compares
    ``ranking.mode`` (issue 20's grep, as a test)."""
    import re

    pattern = re.compile(r"ranking\.mode ==|mode == \"|ranking\.mode in \(")
    offenders = []
    for path in _first_party_sources():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, offenders
