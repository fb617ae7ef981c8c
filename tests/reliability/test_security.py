"""Security: safe YAML, no pickles in the store, ids that cannot escape the store, and
credentials that come only from the environment and leak nowhere."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from doodl.orchestrator.cli import main
from doodl.orchestrator.spec import SpecError, load_spec
from tests.conftest import FAST_REDUCE, tiny_spec_dict, write_spec
from tests.orchestrator.test_cli import DOODL

SECRETS = {
    "MLFLOW_TRACKING_TOKEN": "planted-mlflow-token-7f3a9c",
    "MLFLOW_TRACKING_PASSWORD": "planted-mlflow-password-1b2c3d",
    "AWS_ACCESS_KEY_ID": "AKIAPLANTEDKEY0000001",
    "AWS_SECRET_ACCESS_KEY": "planted-s3-secret-5e6f7a8b9c",
    "RAY_AUTH_TOKEN": "0123456789abcdef0123456789abcdef",  # planted Ray token (the local cluster's)
}
ALLOWED_SUFFIXES = {".json", ".parquet", ".png", ".svg", ".dot"}
PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@pytest.fixture(scope="module")
def with_secrets(tmp_path_factory):
    """`doodl sweep --reduce` in a fresh process whose environment holds planted secrets."""
    tmp = tmp_path_factory.mktemp("secrets")
    # what is checked is every file the reduction writes, not its analyses: cheap settings
    spec = write_spec(tmp, tiny_spec_dict(name="secure", reduce=FAST_REDUCE))
    env = {**os.environ, **SECRETS, "RAY_AUTH_MODE": "token"}
    done = subprocess.run([DOODL, "sweep", str(spec), "--store", str(tmp / "store"), "--reduce",
                           "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--no-progress"],
                          cwd=tmp, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, done


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    marker = tmp_path / "executed"
    evil.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\ndataset: {{name: iris}}\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(evil)
    assert not marker.exists()


def test_nothing_in_the_store_is_pickled(with_secrets):
    tmp, _ = with_secrets
    files = [p for p in (tmp / "store").rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert path.suffix in ALLOWED_SUFFIXES, path
        assert path.read_bytes()[:2] not in PICKLE_MAGIC, path


def test_planted_secrets_appear_nowhere(with_secrets):
    tmp, done = with_secrets
    logs = done.stdout + done.stderr
    files = [p for p in tmp.rglob("*") if p.is_file()]  # the store, the MLflow database and its artifacts
    assert any(p.name == "mlflow.db" for p in files) and any("mlartifacts" in p.parts for p in files)
    for secret in SECRETS.values():
        assert secret not in logs
        for path in files:
            assert secret.encode() not in path.read_bytes(), path
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("secure")
    for run in client.search_runs([exp.experiment_id]):
        text = repr(run.data.params) + repr(run.data.tags)
        assert not any(s in text for s in SECRETS.values())


@pytest.mark.parametrize("name", ["../evil", "/etc/evil", "a/b", "..", "evil\\..\\x"])
def test_ids_cannot_escape_the_store(tmp_path, name, capsys):
    spec = write_spec(tmp_path, tiny_spec_dict(name=name))
    assert main(["sweep", str(spec), "--store", str(tmp_path / "store"),
                 "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    assert "name: must be 1-100 letters" in capsys.readouterr().err
    for command in ("status", "reduce", "sync"):
        assert main([command, name, "--store", str(tmp_path / "store")]) == 2
        assert f"sweep id {name!r}: must be letters" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # nothing written anywhere


def test_ids_inside_a_tampered_variants_file_cannot_escape(with_secrets, tmp_path, capsys):
    import shutil

    src, _ = with_secrets
    shutil.copytree(src / "store", tmp_path / "store")
    path = tmp_path / "store" / "secure" / "variants.parquet"
    table = pq.read_table(path)
    units = table.column("unit_id").to_pylist()
    units[0] = "../../../../escape"
    pq.write_table(table.set_column(table.schema.get_field_index("unit_id"), "unit_id", pa.array(units)), path)
    for command in (["status", "secure"], ["reduce", "secure", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]):
        assert main([*command, "--store", str(tmp_path / "store")]) == 2
        assert "variants.parquet: corrupted (unit_id '../../../../escape' is not a doodl id)" in capsys.readouterr().err
    assert not Path(tmp_path / "escape").exists() and not (tmp_path / "m.db").exists()
