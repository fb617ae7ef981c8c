"""One package talks to MLflow, and the commands that only read the store (or sync it to
MLflow) start without Ray or torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli, tiny_spec_dict, write_spec

ROOT = Path(__file__).resolve().parents[3]


def test_no_module_outside_the_tracking_package_imports_mlflow():
    offenders = []
    for package in ("orchestrator", "analysis", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            if path.is_relative_to(ROOT / "orchestrator" / "tracking"):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "mlflow"]
    assert offenders == []


@pytest.mark.usefixtures("ray_session")
def test_sync_report_ls_and_status_load_neither_ray_nor_torch(tmp_path):
    spec = write_spec(tmp_path, tiny_spec_dict(name="light"))
    store, db = str(tmp_path / "store"), f"sqlite:///{tmp_path / 'm.db'}"
    assert run_cli(["sweep", str(spec), "--store", store, "--tracking-uri", f"sqlite:///{tmp_path / 'other.db'}",
                    "--no-progress"])[0] == 0
    commands = {"sync": ["sync", "light", "--store", store, "--tracking-uri", db],
                "report": ["report", "light", "--store", store, "--tracking-uri", db, "--out", str(tmp_path / "rep")],
                "ls": ["ls", "--store", store],
                "status": ["status", "light", "--store", store]}
    script = ("import json, sys\nfrom doodl.orchestrator.cli import main\ncode = main(json.loads(sys.argv[1]))\n"
              "print(json.dumps({'code': code, 'ray': 'ray' in sys.modules, 'torch': 'torch' in sys.modules}))")
    for name, argv in commands.items():
        done = subprocess.run([sys.executable, "-c", script, json.dumps(argv)], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result == {"code": 0, "ray": False, "torch": False}, (name, done.stderr[-2000:])
