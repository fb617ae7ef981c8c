"""Only the store builds paths of the store.

Every path of a sweep's directory is declared by :mod:`doodl.orchestrator.store.layout`
(the shard layout below a unit by :mod:`doodl.workers.shards`, which the workers write in
Ray actors and the layout imports its names from). This test reads (``ast``) every module of
``orchestrator/``, ``analysis/`` and ``workers/`` outside those two places and fails on a
string that names a part of the layout: the folder and file names (``sweep.json``,
``reduction``, ``plots``, ``_leases``, ``audits``, ``report.json``, ...) and suffixes
(``.parquet``, ``.json``) are read from the layout module itself, so the list cannot drift.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from doodl.orchestrator.store import layout

REPO = Path(__file__).resolve().parents[3]
SCANNED = ("orchestrator", "analysis", "workers")
OWNERS = ("orchestrator/store/", "workers/shards.py")  # where the store's paths are declared
# Layout words that are also plain data words. A shard kind passed to the store's readers
# (``read_unit_rows("finals", ...)``) is flagged inside a path (next to a '/'), not alone;
# ``runs`` and ``groups`` (keys of a task's result, MLflow's ``/runs/`` URLs) never alone nor
# as a segment: a reduction part below them ends in ``.parquet``, which is flagged.
SHARD_KINDS = {"trajectories", "snapshots", "finals"}
COMMON_WORDS = {"runs", "groups"}
# Strings that look like the store's layout but name something else, with the reason.
NOT_STORE_PATHS = {
    ("orchestrator/tracking/_sink.py", "reduction"): "the MLflow artifact folder of the parent run",
    ("orchestrator/tracking/_sink.py", "reduction/"): "the MLflow artifact folder of the parent run",
}


def layout_names() -> tuple[set[str], set[str]]:
    """(folder and file names, suffixes) of the layout: its module-level string constants."""
    values = {v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str)}
    return {v for v in values if not v.startswith(".")}, {v for v in values if v.startswith(".")}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of string statements (docstrings): prose about the layout is allowed."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def store_paths_built(source: str, names: set[str], suffixes: set[str]) -> list[tuple[int, str]]:
    """(line, string) of each literal in ``source`` that names a part of the store layout:
    a layout name on its own (but for :data:`SHARD_KINDS`), a path segment between '/'
    that is a layout name, or a string (or part of an f-string) ending in a layout suffix
    (:data:`COMMON_WORDS` are left to the suffix)."""
    names = names - COMMON_WORDS
    tree = ast.parse(source)
    prose = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in prose:
            continue
        text = node.value
        segments = text.split("/")
        if (text in names and text not in SHARD_KINDS) or ("/" in text and names.intersection(segments)) \
                or any(text.endswith(s) for s in suffixes):
            found.append((node.lineno, text))
    return sorted(found)


def scanned_modules() -> list[Path]:
    files = [p for package in SCANNED for p in sorted((REPO / package).rglob("*.py"))]
    return [p for p in files if not p.relative_to(REPO).as_posix().startswith(OWNERS)]


def test_layout_declares_the_names_the_scan_looks_for():
    names, suffixes = layout_names()
    assert {"sweep.json", "variants.parquet", "reduction", "plots", "_leases", "audits", "report.json",
            "trajectories", "_commits"} <= names
    assert {".parquet", ".json"} <= suffixes


def test_the_scan_finds_a_store_path():
    """The check itself: literals a module would use to build a path are found, prose and
    data words are not."""
    names, suffixes = layout_names()
    source = '''
"""Docstrings may say reduction/plots and sweep.json."""
a = f"{store.root}/reduction/{name}.parquet"
b = "sweep.json"
c = root + "/" + "audits"
d = f"{root}/_leases/{purpose}.json"
e = result["runs"]
f = read_unit_rows("finals", units)
g = f"{ui}/#/experiments/{exp}/runs/{run}"
h = f"{root}/finals/unit={unit}/part-0.parquet"
'''
    found = store_paths_built(source, names, suffixes)
    assert found == sorted([(3, "/reduction/"), (3, ".parquet"), (4, "sweep.json"), (5, "audits"), (6, "/_leases/"),
                            (6, ".json"), (10, "/finals/unit="), (10, "/part-0.parquet")])


def test_every_exception_is_still_needed():
    names, suffixes = layout_names()
    for module, text in NOT_STORE_PATHS:
        assert text in [t for _, t in store_paths_built((REPO / module).read_text(), names, suffixes)], \
            f"{module} no longer has {text!r}: drop it from NOT_STORE_PATHS"


@pytest.mark.parametrize("path", scanned_modules(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_module_outside_the_store_builds_a_store_path(path):
    names, suffixes = layout_names()
    module = path.relative_to(REPO).as_posix()
    found = [(line, text) for line, text in store_paths_built(path.read_text(), names, suffixes)
             if (module, text) not in NOT_STORE_PATHS]
    assert not found, (f"{module} builds store paths {found}: ask the store "
                       "(SweepStore.layout, ReductionStore) instead")
