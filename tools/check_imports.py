#!/usr/bin/env python3
"""Check the package's import structure; exit 1 on a problem (run by ``make test`` via
``tests/test_architecture.py``; see ``docs/architecture.md``).

Two rules, on every ``import`` statement in ``qcodes_stmtip/`` (module level or inside a
function; only imports under ``if TYPE_CHECKING:`` are skipped for the cycle rule, since
they never run):

1. **No import cycles** between modules (files) of the package, apart from the few in
   :data:`ALLOWED_CYCLES`.
2. **Hardware-side code does not import the simulator**: nothing in :data:`HARDWARE_SIDE`
   imports ``qcodes_stmtip.sim`` (not even for type checking), apart from the modules in
   :data:`SIM_ALLOWED`, and does not load it through other modules either (runtime
   imports followed transitively). The shared vocabulary lives in
   ``qcodes_stmtip.taxonomy``, the shared image arithmetic in ``qcodes_stmtip.imaging``.

Usage: ``python tools/check_imports.py [PACKAGE_DIR]`` (default: ``qcodes_stmtip`` beside
this folder). Reads files only; imports nothing of the package.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "qcodes_stmtip"
SIM = f"{PACKAGE}.sim"

#: Module prefixes that run against real hardware and must not import the simulator.
HARDWARE_SIDE: tuple[str, ...] = tuple(f"{PACKAGE}.{p}" for p in (
    "classify", "monitor", "labelling", "drivers", "nanonis", "io", "safety", "lab",
    "conditioning", "taxonomy", "imaging", "extras",
))

#: Hardware-side modules that may import the simulator, and why. Keep it short: each entry
#: is a place where simulated data legitimately meets the hardware side, to be moved to
#: where both meet (an app or a training package) when it is next worked on.
SIM_ALLOWED: dict[str, str] = {
    # simulator-side by design: the ground-truth oracle stands in for the monitor (a
    # TipClassifier) in tests and the fast benchmark, reading the truth through
    # sim.truth.frame_truth (issue 17: "conditioning except oracle.py")
    f"{PACKAGE}.conditioning.oracle": "the simulator's ground truth as the classifier",
    # builds the shipped hsi100-sim / au111 / cu111 bundles from simulated frames, and renders
    # frames at a fixed geometry the caller passes (the demo trains its fallback bundle on them)
    f"{PACKAGE}.classify.default_bundles": "trains the default bundles on simulated frames",
    # `stmtip lab demo` starts a simulated controller for the lab instruments
    f"{PACKAGE}.lab.cli": "serves the simulator behind `stmtip lab demo`",
}

#: Import cycles tolerated for now (each a frozenset of modules), and why. None today: keep it so.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line``; ``typing_only`` under ``if TYPE_CHECKING:``."""

    source: str
    target: str
    line: int
    typing_only: bool


def module_name(root: Path, path: Path) -> str:
    """Dotted module name of ``path`` in the package rooted at ``root`` (``__init__`` → package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, typing_only: bool = False):
    """Yield (import node, typing_only) for every import below ``node``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, typing_only
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk_stmt(stmt, True)
            for stmt in child.orelse:
                yield from _walk_stmt(stmt, typing_only)
        else:
            yield from _walk(child, typing_only)


def _walk_stmt(stmt: ast.stmt, typing_only: bool):
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        yield stmt, typing_only
    else:
        yield from _walk(stmt, typing_only)


def collect_edges(root: Path) -> tuple[set[str], list[Edge]]:
    """Every module of the package at ``root`` and every import between them."""
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    edges: list[Edge] = []
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, typing_only in _walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                for alias in node.names:
                    sub = f"{stem}.{alias.name}"
                    targets.append(sub if sub in modules else stem)
            for target in targets:
                # the deepest module of the package that the dotted name names
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith(PACKAGE):
                    edges.append(Edge(name, target, node.lineno, typing_only))
    return modules, edges


def find_cycles(modules: set[str], edges: list[Edge]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan), runtime imports only."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        if not e.typing_only:
            graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(frozenset(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(modules) + 100))
    for m in sorted(modules):
        if m not in index:
            visit(m)
    return out


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def problems(root: Path) -> list[str]:
    """Every violation of the two rules in the package at ``root``, as readable lines."""
    modules, edges = collect_edges(root)
    found: list[str] = []
    for cycle in find_cycles(modules, edges):
        if cycle in ALLOWED_CYCLES:
            continue
        links = sorted(f"{e.source} -> {e.target} (line {e.line})" for e in edges
                       if e.source in cycle and e.target in cycle and not e.typing_only)
        found.append(f"import cycle between {sorted(cycle)}: " + "; ".join(links))
    for e in edges:
        if _in(e.source, HARDWARE_SIDE) and _in(e.target, (SIM,)) and e.source not in SIM_ALLOWED:
            found.append(f"hardware-side {e.source} imports the simulator {e.target} (line {e.line}); "
                         f"import the vocabulary from {PACKAGE}.taxonomy, or add it to SIM_ALLOWED "
                         f"in tools/check_imports.py with a reason")
    direct = {line.split()[1] for line in found if line.startswith("hardware-side")}
    for source, path in sim_paths(modules, edges).items():
        if source not in direct:
            found.append(f"hardware-side {source} loads the simulator through " + " -> ".join(path))
    return found


def sim_paths(modules: set[str], edges: list[Edge]) -> dict[str, list[str]]:
    """Hardware-side modules (not in :data:`SIM_ALLOWED`) whose runtime imports reach the
    simulator through other modules, with one such import path each."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        if not e.typing_only:
            graph[e.source].add(e.target)
    out: dict[str, list[str]] = {}
    for source in sorted(modules):
        if not _in(source, HARDWARE_SIDE) or source in SIM_ALLOWED:
            continue
        previous: dict[str, str] = {source: ""}
        queue = [source]
        while queue:
            v = queue.pop(0)
            if _in(v, (SIM,)):
                path = [v]
                while previous[path[-1]]:
                    path.append(previous[path[-1]])
                if len(path) > 2:  # a direct import is reported by the rule above
                    out[source] = path[::-1]
                break
            for w in sorted(graph[v] - previous.keys()):
                previous[w] = v
                queue.append(w)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent / PACKAGE
    found = problems(root)
    for line in found:
        print(line)
    print(f"check_imports: {len(found)} problem(s) in {root}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
