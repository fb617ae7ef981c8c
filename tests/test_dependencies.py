"""Every third-party module the three packages import is declared in pyproject's
``dependencies``: an import that works here only because another package pulled it in
breaks the day that package stops doing so."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "workers", "analysis")

# PyPI name (normalised: lower case, '-' for '_' and '.') -> the module it is imported as,
# where the two differ
IMPORT_NAMES = {
    "pychomp2": "pychomp",
    "cmgdb": "CMGDB",
    "scikit-learn": "sklearn",
    "pyyaml": "yaml",
}


def declared_modules() -> set[str]:
    """The top-level modules pyproject's ``dependencies`` provide."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0] for d in deps}
    names = {re.sub(r"[-_.]+", "-", n).lower() for n in names}
    return {IMPORT_NAMES.get(n, n.replace("-", "_")) for n in names}


def imported_modules() -> dict[str, set[str]]:
    """Top-level module -> the files that import it, for absolute imports in the packages."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    found.setdefault(module.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared():
    declared = declared_modules()
    undeclared = {top: sorted(files) for top, files in imported_modules().items()
                  if top not in sys.stdlib_module_names and top != "doodl" and top not in declared}
    assert not undeclared, f"imported but not in pyproject's dependencies: {undeclared}"


def test_the_scan_sees_the_imports():
    # a scan that found nothing would pass the test above vacuously
    imported = imported_modules()
    assert {"numpy", "torch", "ray", "pychomp", "CMGDB", "sklearn", "yaml"} <= set(imported)
    assert {"numpy", "torch", "ray", "pychomp", "CMGDB", "sklearn", "yaml"} <= declared_modules()
