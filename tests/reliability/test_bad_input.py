"""Bad input: each is one line on stderr, exit code 2, and nothing written."""

from __future__ import annotations

import os

import pytest

from doodl.orchestrator.spec import load_spec
from doodl.orchestrator.store import derived_sweep_id
from tests.conftest import run_cli, tiny_spec_dict, write_spec


def _run(args):
    code, out, err = run_cli(args)
    return code, out, err.strip()


def _files(root):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, ray_session):
    tmp = tmp_path_factory.mktemp("bad")
    spec = write_spec(tmp, tiny_spec_dict(name="bad"))
    db = f"sqlite:///{tmp / 'm.db'}"
    code, _, err = _run(["sweep", str(spec), "--store", str(tmp / "store"), "--tracking-uri", db, "--no-progress"])
    assert code == 0, err
    return tmp, db


def test_store_that_is_a_file_or_not_writable(tmp_path):
    spec = write_spec(tmp_path, tiny_spec_dict())
    afile = tmp_path / "file"
    afile.write_text("x")
    before = _files(tmp_path)
    for store, message in ((afile, f"store {afile}: is a file, not a directory"),
                           (afile / "sub", f"store {afile / 'sub'}: not writable")):
        code, out, err = _run(["sweep", str(spec), "--store", str(store), "--tracking-uri",
                               f"sqlite:///{tmp_path}/m.db"])
        assert code == 2 and err.startswith(f"doodl: error: {message}") and len(err.splitlines()) == 1
    assert _files(tmp_path) == before  # no store, no MLflow database


def test_unknown_sweep_id(swept):
    tmp, db = swept
    for command in (["status", "nope"], ["reduce", "nope", "--tracking-uri", db], ["sync", "nope", "--tracking-uri", db]):
        code, _, err = _run([*command, "--store", str(tmp / "store")])
        assert code == 2 and err == f"doodl: error: unknown sweep 'nope' in store {tmp / 'store'}"
    assert not (tmp / "store" / "nope").exists()


def test_changed_spec_is_refused_unless_new_sweep(swept):
    tmp, db = swept
    changed = write_spec(tmp, tiny_spec_dict(name="bad", optimizer={"steps": 30}), "changed.yaml")
    before = _files(tmp / "store")
    args = ["sweep", str(changed), "--store", str(tmp / "store"), "--tracking-uri", db, "--no-progress"]
    code, _, err = _run(args)
    assert code == 2 and err == (f"doodl: error: sweep 'bad' already exists in {tmp / 'store'} with a different "
                                 "spec (optimizer.steps changed); give the changed sweep a new name, or pass "
                                 "--new-sweep")
    assert _files(tmp / "store") == before
    code, out, err = _run([*args, "--new-sweep"])
    new_id = derived_sweep_id(load_spec(changed))
    assert code == 0 and f"sweep {new_id}: 8 variants" in out and "trained 3" in out
    assert f"this spec is sweep '{new_id}'" in err
    assert [f for f in _files(tmp / "store") if "/bad/" in f] == [f for f in before if "/bad/" in f]
    code, out, _ = _run([*args, "--new-sweep"])  # the same changed spec resumes its own sweep
    assert code == 0 and f"sweep {new_id}: 8 variants" in out and "trained 0, already done 3" in out


def test_corrupted_variants_file(swept, tmp_path):
    import shutil

    tmp, _ = swept
    shutil.copytree(tmp / "store", tmp_path / "store")
    path = tmp_path / "store" / "bad" / "variants.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    spec = tmp / "spec.yaml"
    before = _files(tmp_path)
    db = f"sqlite:///{tmp_path / 'm.db'}"
    for command in (["status", "bad"], ["reduce", "bad", "--tracking-uri", db], ["sweep", str(spec), "--tracking-uri", db]):
        code, _, err = _run([*command, "--store", str(tmp_path / "store"), *(["--no-progress"] if command[0] != "status" else [])])
        assert code == 2 and err.startswith(f"doodl: error: {path}: corrupted") and len(err.splitlines()) == 1
    assert _files(tmp_path) == before
