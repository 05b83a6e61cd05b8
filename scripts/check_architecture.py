"""Check the shape of src/lookalike: the module import graph has no cycle, and no module reaches into privates.

Every import counts, at the top of a module or inside a function (a function-level
import hides a cycle, it does not remove it); ``if TYPE_CHECKING:`` imports are
annotations only and do not count. A private name is one with a single leading
underscore: a module may use its own, never another module's (``obj._index``
where ``_index`` is defined elsewhere, or ``from lookalike.x import _helper``).
``model.py`` is the front and may use what it built. The package root holds the
public entry points only (at most ``MAX_ROOT_MODULES``), and nothing below the
facade imports it: only the fronts (the CLI, the server, the one-call jobs).

A package's ``__init__`` names its public surface with ``lazy_loader.attach``:
each name counts as an import of the module defining it, and its ``if
TYPE_CHECKING:`` imports must list the same names (what type checkers see). The
two fronts, ``cli`` and ``server/``, import the public API only
(:data:`FRONT_ALLOWED`): the package root, its public modules and each
sub-package's surface, never an inner module such as ``lookalike.dedup.moves``
(the server's modules import each other). Nearest-neighbour search is
``index/``'s: no other module imports faiss (:data:`FAISS_ALLOWED` says why one
may) or builds a full distance matrix (:data:`MATRIX_ALLOWED`).

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
#: The two fronts: the command line and the web server (its modules import each other).
FRONT_MODULES = ("lookalike.cli", "lookalike.server")
#: What the fronts may import: the root package, the root modules of the public API (the facade, errors, config...)
#: and each sub-package's surface (its ``__init__``, see :func:`front_allowed`).
FRONT_ALLOWED = {
    "lookalike",
    "lookalike.model",
    "lookalike.jobs",
    "lookalike.errors",
    "lookalike.config",
    "lookalike.validation",
    "lookalike.version",
    "lookalike.summary",
    "lookalike.engines",
}
#: The search is index/'s: the modules outside it that may import faiss, and why.
FAISS_ALLOWED = {
    "lookalike.explore.layout": "the map's k-means (faiss.Kmeans: at most 50 centroids); neighbours come from index/",
}
#: Modules whose names build a full distance matrix, or dense blocks of one.
MATRIX_MODULES = ("scipy.spatial.distance", "sklearn.metrics.pairwise")
MATRIX_NAMES = {"cdist", "pdist", "distance_matrix", "pairwise_distances", "block_distances"}
#: Outside index/, the modules that may build one, and why.
MATRIX_ALLOWED = {
    "lookalike.operations.evaluate": "evaluate's ranking: each query's rank of every reference, in blocks of queries",
}


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


def _imports(
    name: str, path: Path, known: dict[str, Path], annotations: bool = False
) -> list[tuple[str, list[str], int]]:
    """``(module imported, names taken from it, line)`` for each import of a module, lazy names included
    (:func:`lazy_names`); with ``annotations``, the ``if TYPE_CHECKING:`` imports too."""
    tree = ast.parse(path.read_text())
    hidden = set() if annotations else _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [alias.name for alias in node.names]
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
            found += [(module, [], node.lineno) for module in submodules]
            others = [n for n in names if f"{base}.{n}" not in known]
            if others:
                found.append((base, others, node.lineno))
    for module, (names, line) in lazy_names(name, tree).items():
        found.append((module, names, line))
    return found


def _attach_call(tree: ast.AST) -> ast.Call | None:
    """The ``lazy_loader.attach(...)`` call of a package's ``__init__``, if it makes one."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "attach":
            return node
    return None


def lazy_names(package: str, tree: ast.AST) -> dict[str, tuple[list[str], int]]:
    """The names a package's ``__init__`` hands to ``lazy_loader.attach``: defining module -> (names, line).

    Each is imported on first use, as surely as by an import statement, so it counts as one.
    """
    call = _attach_call(tree)
    if call is None:
        return {}
    attrs = next((k.value for k in call.keywords if k.arg == "submod_attrs"), None)
    if isinstance(attrs, ast.Name):  # a dict defined beside the call (the root's _LAZY)
        attrs = next(
            (
                n.value
                for n in ast.walk(tree)
                if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == attrs.id for t in n.targets)
            ),
            None,
        )
    if not isinstance(attrs, ast.Dict):
        return {}
    return {
        f"{package}.{ast.literal_eval(key)}": (list(ast.literal_eval(value)), call.lineno)
        for key, value in zip(attrs.keys, attrs.values, strict=True)
    }


def import_graph(known: dict[str, Path]) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for name, path in known.items():
        for target, _, _ in _imports(name, path, known):
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
        for target, names, _ in _imports(name, path, known):
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


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level: functions, classes, assignments, imports (``if`` blocks included)."""
    names: set[str] = set()
    nodes = list(tree.body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If | ast.Try):
            nodes += node.body + node.orelse + getattr(node, "finalbody", [])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).partition(".")[0] for alias in node.names)
    return names


def surface_problems(known: dict[str, Path]) -> list[str]:
    """Lazy surfaces whose names are not defined where they say, or differ from their ``TYPE_CHECKING`` imports."""
    problems = []
    for name, path in known.items():
        if path.name != "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        lazy = lazy_names(name, tree)
        if not lazy:
            continue
        for module, (names, line) in lazy.items():
            if module not in known:
                problems.append(f"{path}:{line}: lazy names from {module}, which is not a module")
                continue
            missing = sorted(set(names) - _top_level_names(ast.parse(known[module].read_text())))
            if missing:
                problems.append(f"{path}:{line}: {module} defines no {', '.join(missing)}")
        hidden = _type_checking_nodes(tree)
        typed = {
            (node.module, alias.asname or alias.name)
            for node in ast.walk(tree)
            if id(node) in hidden and isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        promised = {(module, n) for module, (names, _) in lazy.items() for n in names}
        problems += [f"{path}: {n} from {m} is lazy, not among its TYPE_CHECKING imports" for m, n in promised - typed]
        problems += [f"{path}: {n} from {m} is imported for type checkers, not lazy" for m, n in typed - promised]
    return problems


def _is_front(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FRONT_MODULES)


def front_allowed(importer: str, target: str, known: dict[str, Path]) -> bool:
    """Whether a front may import ``target``: the public API (the root, :data:`FRONT_ALLOWED`, a sub-package's
    ``__init__``), or, from a server module, another server module."""
    if not target.startswith(PACKAGE + ".") and target != PACKAGE:
        return True  # not ours
    if target in FRONT_ALLOWED or importer.startswith("lookalike.server") and target.startswith("lookalike.server"):
        return True
    parts = target.split(".")
    return len(parts) == 2 and target in known and known[target].name == "__init__.py"


def front_problems(known: dict[str, Path]) -> list[str]:
    """Imports (and ``lk.store.storage``-style attribute paths) from the fronts into the package's inner modules."""
    problems = []
    for name, path in known.items():
        if not _is_front(name):
            continue
        for target, _, line in _imports(name, path, known, annotations=True):
            if not front_allowed(name, target, known):
                problems.append(f"{path}:{line}: imports the inner module {target} (a front imports the public API)")
        # lk.store.storage.x reaches the inner module as surely as an import of it.
        tree = ast.parse(path.read_text())
        aliases = {
            alias.asname or alias.name: alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name.startswith(PACKAGE)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                dotted = ast.unparse(node).split(".")
                if dotted[0] in aliases:
                    target = ".".join([aliases[dotted[0]], *dotted[1:]])
                    if target in known and not front_allowed(name, target, known):
                        problems.append(f"{path}:{node.lineno}: reaches the inner module {target}")
    return sorted(set(problems))


def search_problems(known: dict[str, Path]) -> list[str]:
    """Modules outside index/ importing faiss or building a full distance matrix, not allowed with a reason."""
    problems = []
    for name, path in known.items():
        if name == "lookalike.index" or name.startswith("lookalike.index."):
            continue
        for target, names, line in _imports(name, path, known):
            if target.partition(".")[0] == "faiss" and name not in FAISS_ALLOWED:
                problems.append(f"{path}:{line}: imports faiss (search is index/'s: use References or lookalike.index)")
            matrix = target.startswith(MATRIX_MODULES) or MATRIX_NAMES & set(names)
            if matrix and name not in MATRIX_ALLOWED:
                problems.append(f"{path}:{line}: builds a full distance matrix ({target}: {', '.join(names) or '*'})")
    return problems


def main() -> int:
    known = modules()
    graph = import_graph(known)
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    private = private_reaches(known)
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles] + private + facade_imports(graph)
    problems += surface_problems(known) + front_problems(known) + search_problems(known)
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
