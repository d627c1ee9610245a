"""The package tree follows the data flow: each subpackage imports only the
layers its `__init__` docstring names ("May import: ..."), and no two parts of
the package import each other, directly or in a loop."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sweeplab"
SUBPACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def unit_of(module: str) -> str:
    """sweeplab.search.tuning -> sweeplab.search; top-level modules are units of their own."""
    return ".".join(module.split(".")[:2])


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sweeplab_imports(path: Path) -> set[str]:
    """Every sweeplab module `path` imports, at the top or inside a function."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from sweeplab import data` imports the module sweeplab.data.
            found |= {f"{base}.{alias.name}" if base == "sweeplab" else base for alias in node.names}
    return {name for name in found if name.startswith("sweeplab.")}


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        unit = unit_of(module_name(path))
        targets = {unit_of(name) for name in sweeplab_imports(path)} - {unit}
        graph.setdefault(unit, set()).update(targets)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop as [a, b, ..., a], or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                loop = visit(target)
                if loop:
                    return loop
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            loop = visit(node)
            if loop:
                return loop
    return None


def allowed_imports(subpackage: str) -> set[str]:
    doc = ast.get_docstring(ast.parse((PACKAGE / subpackage / "__init__.py").read_text())) or ""
    # The paragraph that starts "May import:" (it may wrap).
    found = [part for part in doc.split("\n\n") if part.startswith("May import:")]
    assert found, f"sweeplab/{subpackage}/__init__.py: its docstring has no 'May import: ...' paragraph"
    names = " ".join(found[0].split()).removeprefix("May import:").strip().rstrip(".")
    return {name.strip() for name in names.split(",") if name.strip()}


def test_the_cycle_finder_finds_a_loop_and_only_a_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_relative_and_package_imports_are_resolved(tmp_path, monkeypatch):
    fake = tmp_path / "sweeplab" / "search"
    fake.mkdir(parents=True)
    module = fake / "tuning.py"
    module.write_text("from . import training\nfrom ..tracking import runs\nfrom sweeplab import report\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "sweeplab")
    assert {unit_of(name) for name in sweeplab_imports(module)} == {
        "sweeplab.search",
        "sweeplab.tracking",
        "sweeplab.report",
    }


def test_no_import_cycle_between_parts_of_the_package():
    loop = find_cycle(unit_graph())
    assert loop is None, "import cycle: " + " -> ".join(loop)


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_a_subpackage_imports_only_the_layers_it_names(subpackage):
    allowed = allowed_imports(subpackage)
    unit = f"sweeplab.{subpackage}"
    for path in sorted((PACKAGE / subpackage).rglob("*.py")):
        outside = {unit_of(name) for name in sweeplab_imports(path)} - {unit}
        assert outside <= allowed, (
            f"{path.relative_to(PACKAGE.parent)} imports {sorted(outside - allowed)}; "
            f"sweeplab/{subpackage} may import only {sorted(allowed)}"
        )


def test_errors_are_the_lowest_layer():
    assert sweeplab_imports(PACKAGE / "errors.py") == set()


def test_the_tree_has_one_subpackage_per_stage_of_the_flow():
    assert {"config", "data", "space", "models", "search", "tracking", "ensemble", "report"} <= set(SUBPACKAGES)


def test_no_function_in_src_bench_or_tests_is_over_50_lines():
    """Counted from `def` to its last line; a longer function is split along its seams."""
    root = PACKAGE.parents[1]
    too_long = [
        f"{path.relative_to(root)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for folder in ("src", "bench", "tests")
        for path in sorted((root / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 50
    ]
    assert too_long == []
