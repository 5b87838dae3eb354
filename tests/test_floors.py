"""The subpackages of `ebr` import each other only downward, along the floors of docs/architecture.md.

Every `import` and `from ... import` of every module counts: at module level, inside functions and under
`TYPE_CHECKING`. A subpackage is a top-level name under `ebr/` (a single-file module is its own subpackage).
"""

from __future__ import annotations

import ast
from pathlib import Path

EBR = Path(__file__).resolve().parents[1] / "ebr"

# Bottom first; see docs/architecture.md for what lives on each floor.
FLOORS: list[set[str]] = [
    {"settings", "dates", "rawfs", "credentials", "images", "artifacts", "cpu_limit", "heap"},
    {"text", "contract", "rollout", "workspace"},
    {"features", "lexical", "hybrid", "validation", "simulate"},
    {"judgements"},
    {"models"},
    {"index"},
    {"samples"},
    {"train"},
    {"evaluate"},
    {"config"},
    {"bundle"},
    {"ablate", "report", "cli"},
]
FLOOR_OF = {name: i for i, floor in enumerate(FLOORS) for name in floor}


def _subpackage_of(path: Path) -> str | None:
    """The subpackage a file belongs to; None for `ebr/__init__.py`."""
    first = path.relative_to(EBR).parts[0]
    return None if first == "__init__.py" else first.removesuffix(".py")


def _package_of(path: Path) -> list[str]:
    """The dotted package a file's relative imports start from, as parts (`ebr/index/build.py` -> ebr, index)."""
    parts = list(path.relative_to(EBR.parent).with_suffix("").parts)
    return parts[:-1]


def imported_modules(tree: ast.AST, package: list[str]) -> list[tuple[int, str]]:
    """(line, dotted module) of every import anywhere in `tree`, relative imports resolved against `package`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if module == "ebr":  # `from ebr import rawfs` imports the subpackage it names
                found += [(node.lineno, f"ebr.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return found


def subpackage_edges() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) subpackage pairs with the `file:line` sites of each."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(EBR.rglob("*.py")):
        src = _subpackage_of(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module in imported_modules(tree, _package_of(path)):
            parts = module.split(".")
            if parts[0] != "ebr" or len(parts) < 2:
                continue
            if src is None:
                edges.setdefault(("ebr", parts[1]), []).append(f"{path.relative_to(EBR.parent)}:{line}")
            elif parts[1] != src:
                edges.setdefault((src, parts[1]), []).append(f"{path.relative_to(EBR.parent)}:{line}")
    return edges


def _subpackages() -> set[str]:
    names = {p.name for p in EBR.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    return names | {p.stem for p in EBR.glob("*.py") if p.name != "__init__.py"}


def _cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_every_subpackage_has_one_floor():
    placed = [name for floor in FLOORS for name in floor]
    assert len(placed) == len(set(placed)), "a subpackage is on two floors"
    assert _subpackages() == set(placed), "FLOORS must list exactly the subpackages of ebr/"


def test_the_package_root_imports_no_subpackage():
    assert [b for a, b in subpackage_edges() if a == "ebr"] == []


def test_subpackage_imports_have_no_cycle():
    edges = {e for e in subpackage_edges() if e[0] != "ebr"}
    cycle = _cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_import_goes_to_a_lower_floor():
    wrong = [
        f"{a} (floor {FLOOR_OF[a] + 1}) -> {b} (floor {FLOOR_OF[b] + 1}) at {', '.join(sites)}"
        for (a, b), sites in sorted(subpackage_edges().items())
        if a != "ebr" and FLOOR_OF[a] <= FLOOR_OF[b]
    ]
    assert wrong == [], "imports that do not go down:\n" + "\n".join(wrong)


def test_the_checker_sees_every_kind_of_import():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ebr.train import x\n"
        "def f():\n    import ebr.models.inputs\n    from ebr import rawfs, text\n"
        "class C:\n    def g(self):\n        from ..features import store\n        from . import build\n"
    )
    got = [m for _, m in imported_modules(ast.parse(source), ["ebr", "index"])]
    assert got == ["typing", "ebr.train", "ebr.models.inputs", "ebr.rawfs", "ebr.text", "ebr.features", "ebr.index"]
    assert _cycle({("a", "b"), ("b", "c"), ("c", "a")}) == ["a", "b", "c", "a"]
    assert _cycle({("a", "b"), ("b", "c"), ("a", "c")}) is None
