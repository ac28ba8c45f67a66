"""The packages' one-way arrows, read from the code: pipeline -> churnwise -> analytics -> decisions -> models ->
features; entry points only in pipeline/; no import circle between modules (function-level imports count)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("features", "models", "decisions", "analytics", "churnwise", "pipeline")  # lowest first
MAX_ENTRY_POINT_LINES = 80


def modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    found = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports, at any level of the file (names resolved to their module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    resolved = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            resolved.add(name)
    return resolved


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(path, set(found)) - {name} for name, path in found.items()}


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def test_every_import_points_down_the_layers(graph: dict[str, set[str]]) -> None:
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if layer(target) > layer(module)
    )
    assert upward == []


def test_entry_points_are_small_and_import_no_other_entry_point() -> None:
    for path in sorted((ROOT / "pipeline").glob("*.py")):
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_ENTRY_POINT_LINES, f"{path.name} has {lines} lines"
    found = modules()
    for name, path in found.items():
        if name.startswith("pipeline."):
            others = {t for t in imported(path, set(found)) if t.split(".")[0] == "pipeline" and t != name}
            assert others == set(), f"{name} imports {others}"


def test_no_import_circle_between_modules(graph: dict[str, set[str]]) -> None:
    # Package __init__ modules hold docstrings only; an edge to a package is an edge to nothing that imports.
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                circles.append(trail[trail.index(target) :] + [target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


@pytest.mark.parametrize("folder", ["notebooks", "bench"])
def test_notebooks_and_benchmarks_use_the_packages_not_the_entry_points(folder: str) -> None:
    found = modules()
    for path in sorted((ROOT / folder).glob("*.py")):
        entry = {t for t in imported(path, set(found)) if t.split(".")[0] == "pipeline"}
        assert entry == set(), f"{path.name} imports {entry}"


def test_the_reader_sees_imports_inside_functions() -> None:
    """The checks above would pass vacuously if function-level imports were missed."""
    found = modules()
    assert "models.training" in imported(found["churnwise.api"], set(found))
    assert "decisions.scoring" in imported(found["churnwise.api"], set(found))
