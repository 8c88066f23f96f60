"""The import-layer contract of the ``iqa`` package, read from the source (AST), so imports inside
functions, under ``if TYPE_CHECKING:`` and through ``importlib.import_module("iqa....")`` count.

Layers, lowest first (a layer may import the ones below it, never the ones above):

    shared        iqa.errors, iqa.atomic, iqa.jsonio, iqa.registry: importable by anything
    kernels/data  iqa.ops, iqa.data, iqa.metrics
    models        iqa.models
    training      iqa.training
    entry points  iqa.checkpoint, iqa.scorer, iqa.experiment, iqa.cli, ...

A known violation that cannot be fixed at once goes into ``KNOWN_VIOLATIONS`` (as
``"<file>: <imported module>"``); the test fails on any violation not listed there, and on a
listed one that is gone (delete its entry).
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "iqa"

SHARED = ("iqa.errors", "iqa.atomic", "iqa.jsonio", "iqa.registry")

# importer package → packages it must not import (a package covers its submodules).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "iqa.ops": ("iqa.models", "iqa.training", "iqa.experiment", "iqa.cli"),
    "iqa.data": ("iqa.models", "iqa.training", "iqa.experiment", "iqa.cli"),
    "iqa.metrics": ("iqa.models", "iqa.training", "iqa.experiment", "iqa.cli"),
    "iqa.models": ("iqa.training", "iqa.checkpoint", "iqa.experiment", "iqa.cli", "iqa.scorer"),
    "iqa.training": ("iqa.experiment", "iqa.cli"),
}

# Violations present when this contract was written, to be fixed: "<file>: <imported module>".
# Remove an entry once its import is gone (the test reports stale entries).
KNOWN_VIOLATIONS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository root
    line: int
    importer: str  # dotted module name of the file
    imported: str  # dotted module name imported
    in_function: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    relative = Path(*dotted.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def package_reexports() -> dict[str, set[str]]:
    """Names the top-level ``iqa`` package offers → the modules they come from (``from iqa import
    load_scorer`` depends on iqa.scorer, which ``iqa/__init__.py`` imports inside the function)."""
    init = PACKAGE / "__init__.py"
    tree = ast.parse(init.read_text(), str(init))
    names: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("iqa"):
            for alias in node.names:
                names.setdefault(alias.asname or alias.name, set()).add(node.module)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            inner = {n.module for n in ast.walk(node) if isinstance(n, ast.ImportFrom) and n.module}
            inner |= {a.name for n in ast.walk(node) if isinstance(n, ast.Import) for a in n.names}
            names[node.name] = {m for m in inner if m.startswith("iqa")}
    return names


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, reexports: dict[str, set[str]]) -> list[Import]:
    """Every import of an ``iqa`` module in ``path``, at any depth."""
    return imports_in(path.read_text(), path.relative_to(ROOT), reexports)


def imports_in(source: str, relative: Path, reexports: dict[str, set[str]]) -> list[Import]:
    """Every import of an ``iqa`` module in ``source``, the text of the file ``relative``."""
    path = ROOT / relative
    importer = module_name(path)
    tree = ast.parse(source, str(relative))
    found: list[Import] = []

    def add(node: ast.AST, imported: str, in_function: bool) -> None:
        if imported == "iqa" or imported.startswith("iqa."):
            found.append(Import(relative.as_posix(), node.lineno, importer, imported, in_function))

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, alias.name, in_function)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, importer, path.name == "__init__.py")
            for alias in node.names:
                if base == "iqa" and alias.name in reexports:  # from iqa import load_scorer
                    for source in reexports[alias.name]:
                        add(node, source, in_function)
                elif is_module(f"{base}.{alias.name}"):  # from iqa.models import pipeline
                    add(node, f"{base}.{alias.name}", in_function)
                else:
                    add(node, base, in_function)
        elif isinstance(node, ast.Call):
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if called in ("import_module", "__import__") and node.args:
                argument = node.args[0]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    add(node, argument.value, in_function)
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return found


def all_imports() -> list[Import]:
    reexports = package_reexports()
    return [item for path in sorted(PACKAGE.rglob("*.py")) for item in imports_of(path, reexports)]


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(imports: list[Import]) -> dict[str, list[Import]]:
    """``"<file>: <imported>"`` → the offending imports (one key per file and imported module)."""
    found: dict[str, list[Import]] = {}
    for item in imports:
        if any(within(item.imported, shared) for shared in SHARED):
            continue
        for layer, forbidden in FORBIDDEN.items():
            if within(item.importer, layer) and any(within(item.imported, f) for f in forbidden):
                found.setdefault(f"{item.file}: {item.imported}", []).append(item)
    return found


# --- the contract -----------------------------------------------------------------------------

def test_the_scan_sees_every_module_and_their_imports():
    imports = all_imports()
    files = {item.file for item in imports}
    assert len(list(PACKAGE.rglob("*.py"))) > 50
    assert "iqa/training/module.py" in files and "iqa/models/pipeline.py" in files
    assert any(item.in_function for item in imports), "imports inside functions are scanned too"
    assert any(item.imported == "iqa.scorer" and item.file == "iqa/__init__.py" for item in imports)


def test_no_layer_imports_a_layer_above_it():
    found = violations(all_imports())
    new = {key: items for key, items in found.items() if key not in KNOWN_VIOLATIONS}
    report = "\n".join(f"  {i.file}:{i.line} -> {i.imported}{' (inside a function)' if i.in_function else ''}"
                       for items in new.values() for i in items)
    assert not new, ("imports that break the layering (iqa.ops/data/metrics < iqa.models < iqa.training < entry "
                     f"points; tests/test_layers.py):\n{report}")


def test_known_violations_are_still_there():
    stale = KNOWN_VIOLATIONS - set(violations(all_imports()))
    assert not stale, f"fixed, delete from KNOWN_VIOLATIONS in tests/test_layers.py: {sorted(stale)}"


def test_no_function_level_import_works_around_a_cycle():
    """An import moved into a function "to avoid a circular import" hides a layering problem:
    move the shared code down a layer instead."""
    flagged = []
    for item in all_imports():
        if not item.in_function:
            continue
        lines = (ROOT / item.file).read_text().splitlines()
        comments = _comments(lines, item.line)
        if re.search(r"\b(cycl|circular)", comments, re.IGNORECASE):
            flagged.append(f"{item.file}:{item.line} -> {item.imported}: {comments.strip()}")
    assert not flagged, "function-level imports that avoid a cycle:\n" + "\n".join(flagged)


def _comments(lines: list[str], line: int) -> str:
    """The comments on the import's line and on the comment lines right above it."""
    text = [lines[line - 1]]
    above = line - 2
    while above >= 0 and lines[above].lstrip().startswith("#"):
        text.append(lines[above])
        above -= 1
    comments = []
    for source in text:
        try:
            tokens = tokenize.generate_tokens(io.StringIO(source.strip() + "\n").readline)
            comments += [token.string for token in tokens if token.type == tokenize.COMMENT]
        except (tokenize.TokenError, IndentationError, SyntaxError):
            comments.append(source[source.find("#"):] if "#" in source else "")
    return " ".join(comments)


# --- the checker itself -----------------------------------------------------------------------

def _scan(relative: str, source: str) -> list[Import]:
    return imports_in(textwrap.dedent(source), Path(relative), package_reexports())


def test_checker_finds_function_level_relative_and_dynamic_imports():
    imports = _scan("iqa/data/example.py", """
        import importlib
        from iqa.errors import ConfigurationError
        from . import image_io

        def late():
            from ..models import pipeline
            import iqa.training.module
            importlib.import_module("iqa.experiment")
            from iqa import load_scorer
    """)
    seen = {(item.imported, item.in_function) for item in imports}
    assert seen == {("iqa.errors", False), ("iqa.data.image_io", False), ("iqa.models.pipeline", True),
                    ("iqa.training.module", True), ("iqa.experiment", True), ("iqa.scorer", True)}
    assert set(violations(imports)) == {
        "iqa/data/example.py: iqa.models.pipeline", "iqa/data/example.py: iqa.training.module",
        "iqa/data/example.py: iqa.experiment"}  # iqa.scorer is not forbidden to iqa.data


def test_checker_allows_shared_modules_and_lower_layers():
    imports = _scan("iqa/models/example.py", """
        from iqa.errors import ConfigurationError
        from iqa.registry import register_model
        from iqa.ops.selective_scan import selective_scan
        from iqa.data.image_io import read_rgb
        from iqa import create_model

        def f():
            from iqa.checkpoint import load_module
            from iqa.scorer import Scorer
    """)
    assert set(violations(imports)) == {"iqa/models/example.py: iqa.checkpoint",
                                        "iqa/models/example.py: iqa.scorer"}


# --- what the interpreter actually loads ------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_importing_a_layer_loads_no_layer_above_it(layer):
    """Importing every module of ``layer`` in a fresh interpreter loads none of its forbidden
    packages, not even through a shared module."""
    code = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        package = importlib.import_module({layer!r})
        for module in pkgutil.walk_packages(package.__path__, {layer!r} + "."):
            importlib.import_module(module.name)
        print("\\n".join(sorted(name for name in sys.modules if name.startswith("iqa"))))
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = result.stdout.split()
    bad = sorted(name for name in loaded for forbidden in FORBIDDEN[layer] if within(name, forbidden))
    assert not bad, f"importing {layer} loads {bad}"


def test_cycle_comments_are_found_on_the_line_and_above():
    lines = ["def f():", "    # avoids a circular import", "    from iqa.training import module",
             "    import iqa.data  # cycle"]
    assert "circular" in _comments(lines, 3)
    assert "cycle" in _comments(lines, 4)
    assert _comments(["x = 1", "from iqa.data import records"], 2) == ""
