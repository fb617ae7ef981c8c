"""`doodl ls`: one line per sweep of a store, with its variants, state and last change."""

from __future__ import annotations

import datetime as dt
import os
import shutil

import pytest

from doodl.orchestrator.store import SweepLease, SweepStore
from doodl.orchestrator.store.layout import AUDIT_RECORD, AUDITS
from tests.conftest import FAST_REDUCE, run_cli, tiny_spec_dict
from tests.orchestrator.stores import train_in_process


def _touch_all(root, when: dt.datetime) -> None:
    """Give every file under ``root`` the modification time ``when``."""
    for dirpath, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(dirpath, name), (when.timestamp(), when.timestamp()))


def _ls(store) -> dict[str, list[str]]:
    code, out, err = run_cli(["ls", "--store", str(store)])
    assert code == 0, err
    header, *lines = out.splitlines()
    assert header.split() == ["SWEEP", "VARIANTS", "STATE", "UNITS", "LAST", "CHANGE"]
    return {line.split()[0]: line.split() for line in lines}


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory, ray_session):
    """`reduced`: trained and reduced (Koopman only: the cheapest analysis writes its table
    as any does); `partial`: one of its 3 units trained (a driver stopped after the first)."""
    tmp = tmp_path_factory.mktemp("ls")
    store = str(tmp / "store")
    train_in_process(store, tiny_spec_dict(name="reduced", optimizer={"steps": 15}, reduce=FAST_REDUCE))
    code, _, err = run_cli(["reduce", "reduced", "--store", store, "--tracking-uri", f"sqlite:///{tmp / 'm.db'}",
                            "--no-progress", "--only", "koopman"])
    assert code == 0, err
    train_in_process(store, tiny_spec_dict(name="partial", optimizer={"steps": 15}), units=1)
    return tmp


def test_each_sweep_is_one_line_with_its_state_and_last_change(two_sweeps, tmp_path):
    shutil.copytree(two_sweeps / "store", tmp_path / "store")
    store = tmp_path / "store"
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    _touch_all(store / "reduced", when)
    lines = _ls(store)
    assert sorted(lines) == ["partial", "reduced"]
    assert lines["reduced"] == ["reduced", "8", "reduced", "3/3", "2024-01-02T03:04:05Z"]
    assert lines["partial"][:4] == ["partial", "8", "training", "1/3"]
    newest = max(os.stat(os.path.join(d, f)).st_mtime for d, _, fs in os.walk(store / "partial") for f in fs)
    assert lines["partial"][4] == dt.datetime.fromtimestamp(newest, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    # a driver killed between a unit's shards and its marker: that unit does not count
    reduced = SweepStore(str(store), "reduced")
    (store / "reduced" / "_commits" / f"{reduced.read_variants()['unit_id'][0]}.json").unlink()
    assert _ls(store)["reduced"][2:4] == ["training", "2/3"]


def test_trained_audited_and_a_live_training_lease(two_sweeps, tmp_path):
    """All units committed and nothing more: trained; an audit's record: audited; a driver
    holding the training lease: training, whatever the store holds."""
    shutil.copytree(two_sweeps / "store" / "reduced", tmp_path / "store" / "reduced")
    shutil.rmtree(tmp_path / "store" / "reduced" / "reduction")
    assert _ls(tmp_path / "store")["reduced"][2] == "trained"
    store = SweepStore(str(tmp_path / "store"), "reduced")
    with SweepLease(store, "training"):
        assert _ls(tmp_path / "store")["reduced"][2] == "training"
    assert _ls(tmp_path / "store")["reduced"][2] == "trained"  # released with its driver
    record = tmp_path / "store" / "reduced" / AUDITS / "20240102T030405Z" / AUDIT_RECORD
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    assert _ls(tmp_path / "store")["reduced"][2] == "audited"


def test_an_unreadable_sweep_is_listed_with_its_problem(two_sweeps, tmp_path):
    shutil.copytree(two_sweeps / "store", tmp_path / "store")
    (tmp_path / "store" / "partial" / "variants.parquet").write_bytes(b"PAR1 not parquet")
    lines = _ls(tmp_path / "store")
    assert lines["partial"][:3] == ["partial", "-", "unreadable"] and "corrupted" in " ".join(lines["partial"])
    assert lines["reduced"][2] == "reduced"  # the others are still listed


def test_an_empty_or_missing_store_says_so(tmp_path):
    (tmp_path / "empty" / "not-a-sweep").mkdir(parents=True)  # a directory without sweep.json
    for store in (tmp_path / "empty", tmp_path / "missing"):
        assert run_cli(["ls", "--store", str(store)]) == (0, f"no sweeps in store {store}\n", "")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "file").write_text("")
    code, _, err = run_cli(["ls", "--store", str(tmp_path / "file")])
    assert code == 2 and err == f"doodl: error: store {tmp_path / 'file'}: is a file, not a directory\n"
