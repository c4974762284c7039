"""The package's shape: dependencies point one way, with no cycles, and function-level imports say why."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "siamese"

# Lower layers never import higher ones; packages that share a rank never import each other.
LAYERS = {
    "siamese._registry": 0,
    "siamese.distances": 0,
    "siamese.runtime": 0,
    "siamese.faces": 0,
    "siamese.data": 1,
    "siamese.evaluation": 2,
    "siamese.modeling": 4,
    "siamese.search": 5,
    "siamese.hub": 5,
    "siamese.serving": 6,
    "siamese.training": 6,
    "siamese.cli": 7,
    "siamese.space": 7,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    """The LAYERS key that owns `module` (the longest matching prefix), or None for the package's own __init__."""
    owners = [key for key in LAYERS if module == key or module.startswith(key + ".")]
    return max(owners, key=len) if owners else None


def imported_modules(tree: ast.Module, current: str, is_package: bool) -> list[tuple[str, ast.AST]]:
    """Every `siamese` module named by an import statement anywhere in `tree`, with the statement."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names if alias.name.split(".")[0] == "siamese"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = current.split(".") if is_package else current.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "siamese":
                continue
            # `from siamese.data import images` names the module siamese.data.images.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.append((candidate if module_path(candidate) else target, node))
    return found


def module_path(module: str) -> Path | None:
    relative = Path(*module.split("."))
    for candidate in (
        PACKAGE_ROOT.parent / relative.with_suffix(".py"),
        PACKAGE_ROOT.parent / relative / "__init__.py",
    ):
        if candidate.is_file():
            return candidate
    return None


def all_modules() -> dict[str, tuple[Path, ast.Module]]:
    return {
        module_name(path): (path, ast.parse(path.read_text(encoding="utf-8"))) for path in PACKAGE_ROOT.rglob("*.py")
    }


def test_every_module_belongs_to_a_layer():
    unplaced = [name for name in all_modules() if name != "siamese" and layer_of(name) is None]
    assert unplaced == []


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for name, (path, tree) in all_modules().items():
        owner = layer_of(name)
        if owner is None:
            continue  # the package's __init__ names public objects by string only
        for target, node in imported_modules(tree, name, path.name == "__init__.py"):
            target_owner = layer_of(target)
            if target_owner is None or target_owner == owner:
                continue
            if LAYERS[target_owner] >= LAYERS[owner]:
                wrong.append(
                    f"{name} (layer {LAYERS[owner]}) imports {target} (layer {LAYERS[target_owner]}), "
                    f"line {node.lineno}"
                )
    assert wrong == []


def test_the_import_graph_has_no_cycles():
    modules = all_modules()
    graph = {
        name: {target for target, _ in imported_modules(tree, name, path.name == "__init__.py") if target in modules}
        - {name}
        for name, (path, tree) in modules.items()
    }
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def function_level_imports(tree: ast.Module) -> list[ast.AST]:
    found = []
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [node for node in ast.walk(function) if isinstance(node, ast.Import | ast.ImportFrom)]
    return found


def test_imports_inside_functions_say_why():
    """Only an optional dependency or start-up time justifies one, and a comment on or above it says which."""
    silent = []
    for name, (path, tree) in all_modules().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in function_level_imports(tree):
            same_line = "#" in lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip().startswith("#")
            if not (same_line or above):
                silent.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert silent == []


@pytest.mark.parametrize("example", ["siamese.modeling.network", "siamese.training.loop"])
def test_the_layer_of_a_module_is_its_package_prefix(example):
    assert layer_of(example) == example.rsplit(".", 1)[0]


def test_the_library_never_imports_the_app_or_the_scripts():
    outside = {"app", "demo", "train", "benchmarks", "scripts", "tests", "gradio"}
    wrong = []
    for name, (_path, tree) in all_modules().items():
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            wrong += [f"{name}:{node.lineno} imports {target}" for target in names if target.split(".")[0] in outside]
    assert wrong == []
