"""The layers of docs/architecture.md, read from the imports with `ast`: each rule is checked over every module
of the package, and each checker is shown to catch a planted violation (so a rule cannot pass by reading
nothing)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import neurometry
from neurometry.store.results import KINDS

PACKAGE = Path(neurometry.__file__).parent
STAGES = ("record", "measures", "compare", "probe", "steer", "features", "training", "lab", "dynamics", "language", "detect")
FOUNDATIONS = ("models", "store", "errors", "arrays", "linalg", "folds", "ridge", "datasets", "threads", "files", "clusters", "memory")
ABOVE_STAGES = ("cli", "workflows", "plots", "tables", "report", "app", "demo")
INTERFACES = ("report", "app", "demo")
RESULTS_MODULE = "neurometry.store.results"
# the catalog's raw result methods: only the results module calls them
RAW_RESULT_METHODS = ("replace_results", "result_rows", "result_sets", "delete_results")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_package(module: str) -> str:
    """neurometry.steer.lens -> steer; neurometry.ridge -> ridge."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import, relative ones resolved."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, [alias.name for alias in node.names], node.lineno))
    return found


def sources() -> list[tuple[str, Path, ast.Module]]:
    return [(module_name(p), p, ast.parse(p.read_text(), str(p))) for p in sorted(PACKAGE.rglob("*.py"))]


def layer_violations(module: str, tree: ast.Module, is_package: bool = False) -> list[str]:
    """Imports that break the layering rules, as 'module:line imports target'."""
    here = top_package(module)
    bad = []
    for target, names, line in imports(tree, module, is_package):
        there = top_package(target) if target.startswith("neurometry.") else None
        where = f"{module}:{line} imports {target}"
        if target.split(".")[0] == "matplotlib" and here != "plots":
            bad.append(f"{where} (only neurometry.plots draws)")
        if here in STAGES + FOUNDATIONS:
            if target.split(".")[0] == "argparse":
                bad.append(f"{where} (argument parsing belongs to the CLI)")
            if there in ABOVE_STAGES:
                bad.append(f"{where} (a stage or foundation imports a layer above it)")
        if here in FOUNDATIONS and there in STAGES:
            bad.append(f"{where} (a foundation imports a stage)")
        if here in INTERFACES and there == "cli":
            bad.append(f"{where} (report, app and demo call workflows, not the CLI)")
        if there is not None and there != here:
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    bad.append(f"{where} ({name}: a private name of another package)")
    return bad


def kind_violations(module: str, tree: ast.Module) -> list[str]:
    """Places outside the results module that name a result kind or touch the raw result rows."""
    if module == RESULTS_MODULE:
        return []
    kinds = set(KINDS)
    # names no verb or measure shares: wrong anywhere as a string
    distinctive = {k for k in kinds if "_" in k}
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in distinctive:
                bad.append(f"{module}:{node.lineno} spells result kind {node.value!r}")
            raw_sql = "FROM results" in node.value or "INTO results" in node.value
            if raw_sql and module not in ("neurometry.store.store", "neurometry.store.catalog"):
                bad.append(f"{module}:{node.lineno} queries the results table")
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in RAW_RESULT_METHODS and module != "neurometry.store.store":
                bad.append(f"{module}:{node.lineno} calls Store.{called} (use neurometry.store.results)")
            if any(word in called for word in ("result", "stored", "load", "save")):
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    if isinstance(arg, ast.Constant) and arg.value in kinds:
                        bad.append(f"{module}:{node.lineno} passes result kind {arg.value!r} as a string")
    return bad


def test_the_package_keeps_its_layers():
    modules = sources()
    assert len(modules) > 80  # the whole package was read
    bad = [v for name, path, tree in modules for v in layer_violations(name, tree, path.name == "__init__.py")]
    assert bad == []


def test_only_the_results_module_names_result_kinds():
    bad = [v for name, _, tree in sources() for v in kind_violations(name, tree)]
    assert bad == []


@pytest.mark.parametrize(
    ("module", "source", "fragment"),
    [
        ("neurometry.steer.evaluate", "import matplotlib.pyplot as plt", "only neurometry.plots draws"),
        ("neurometry.measures.spectrum", "import argparse", "argument parsing"),
        ("neurometry.probe.linear", "from neurometry.workflows.probe import run_probe", "layer above"),
        ("neurometry.store.store", "from neurometry.measures import MEASURES", "foundation imports a stage"),
        ("neurometry.demo", "from neurometry.cli.output import finish", "not the CLI"),
        ("neurometry.features.evaluate", "from neurometry.steer.lens import _require_text", "private name"),
        ("neurometry.features.evaluate", "from ..steer.lens import _require_text", "private name"),
    ],
)
def test_each_layer_rule_catches_a_planted_violation(module, source, fragment):
    (violation,) = layer_violations(module, ast.parse(source))
    assert fragment in violation


def test_private_names_within_one_package_and_sibling_imports_are_fine():
    source = "from neurometry.steer.lens import _helper\nfrom neurometry.models.hooks import capture"
    assert layer_violations("neurometry.steer.diffing", ast.parse(source)) == []


@pytest.mark.parametrize(
    "source",
    [
        'KIND = "steer_sweep"',
        'store.save_results("measure", records, run)',
        'frame = load_results(store, "patch")',
        'store.replace_results("probe", run, 1, rows, whole_sets=False)',
        'conn.execute("SELECT COUNT(*) FROM results WHERE kind = ?", (kind,))',
    ],
)
def test_the_kind_rule_catches_a_planted_spelling(source):
    assert kind_violations("neurometry.app.views", ast.parse(source))
