"""Check the shape of src/lookalike: the module import graph has no cycle, and no module reaches into privates.

Every import counts, at the top of a module or inside a function (a function-level
import hides a cycle, it does not remove it); ``if TYPE_CHECKING:`` imports are
annotations only and do not count. A private name is one with a single leading
underscore: a module may use its own, never another module's (``obj._index``
where ``_index`` is defined elsewhere, or ``from lookalike.x import _helper``).
``model.py`` is the front and may use what it built. The package root holds the
public entry points only (at most ``MAX_ROOT_MODULES``), and nothing below the
facade imports it: only the fronts (the CLI, the server, the one-call jobs).

    python scripts/check_architecture.py        # exit status 1 and a list when something is wrong
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "lookalike"
FRONT = {"lookalike.model"}
FACADE = "lookalike.model"
MAX_ROOT_MODULES = 12
#: Modules above the facade, which may import it (the package itself for its lazy names).
FRONTS = ("lookalike", "lookalike.cli", "lookalike.jobs", "lookalike.server")
#: Documented methods of standard types whose names start with an underscore (namedtuple's API).
PUBLIC_UNDERSCORED = {"_asdict", "_replace", "_fields", "_make"}


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in node.body:
                hidden.update(id(n) for n in ast.walk(child))
    return hidden


def _imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """``(module imported, names taken from it)`` for each import statement of a module."""
    tree = ast.parse(path.read_text())
    hidden = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [alias.name for alias in node.names]
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
            found += [(module, []) for module in submodules]
            others = [n for n in names if f"{base}.{n}" not in known]
            if others:
                found.append((base, others))
    return found


def import_graph(known: dict[str, Path]) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for name, path in known.items():
        for target, _ in _imports(name, path, known):
            if target in known and target != name:
                graph.add_edge(name, target)
    return graph


def _defined_privates(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, assignments, attributes it sets on self."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def private_reaches(known: dict[str, Path]) -> list[str]:
    problems = []
    for name, path in known.items():
        if name in FRONT:
            continue
        tree = ast.parse(path.read_text())
        own = _defined_privates(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                receiver = node.value.id if isinstance(node.value, ast.Name) else None
                if receiver not in ("self", "cls") and node.attr not in own | PUBLIC_UNDERSCORED:
                    problems.append(f"{path}:{node.lineno}: reads {ast.unparse(node)} (private to another module)")
        for target, names in _imports(name, path, known):
            if target.startswith(PACKAGE):
                for imported in names:
                    if imported.startswith("_") and not imported.startswith("__"):
                        problems.append(f"{path}: imports {imported} from {target} (private to it)")
    return problems


def root_modules(known: dict[str, Path]) -> list[str]:
    """The ``.py`` files at the package root, ``__init__`` included."""
    return [name for name, path in known.items() if path.parent == ROOT / PACKAGE]


def facade_imports(graph: nx.DiGraph) -> list[str]:
    """Modules below the facade that import it."""
    users = {
        name
        for name in graph.predecessors(FACADE)
        if name not in FRONTS and not any(name.startswith(f + ".") for f in FRONTS[1:])
    }
    return [f"{name} imports the facade {FACADE}" for name in sorted(users)]


def main() -> int:
    known = modules()
    graph = import_graph(known)
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    private = private_reaches(known)
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles] + private + facade_imports(graph)
    root = root_modules(known)
    if len(root) > MAX_ROOT_MODULES:
        problems.append(f"{len(root)} modules at the package root (at most {MAX_ROOT_MODULES}): {', '.join(root)}")
    for problem in problems:
        print(problem)
    print(
        f"{len(known)} modules ({len(root)} at the root), {graph.number_of_edges()} imports: {len(cycles)} cycles, "
        f"{len(private)} private reaches, {len(problems) - len(cycles) - len(private)} other problems"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
