"""`doodl status`: a summary of the variants per state, over the sweep and per group; every
variant only with `--all`."""

from __future__ import annotations

import re
import shutil

import pytest

from doodl.orchestrator.store import SweepLease, SweepStore
from tests.conftest import run_cli, tiny_spec_dict
from tests.orchestrator.stores import train_in_process

COLUMNS = ["variants", "ok", "diverged", "stopped", "training", "failed", "torn", "pending"]
# group labels as the reduction names groups (doodl.workers.config.group_label), written out
CALM = "width 8, depth 1, noise {:g}, frac 1, lr 0.05, batch 16"
WILD = "width 8, depth 1, noise {:g}, frac 1, lr 1e+06, batch 16"


def _summary(out: str) -> dict[str, list[int]]:
    """The summary table: label -> counts in COLUMNS order."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["group"])
    assert lines[start].split() == ["group", *COLUMNS]
    table = {}
    for line in lines[start + 1:]:
        m = re.fullmatch(r"\s*(.+?)((?:\s+\d+){" + str(len(COLUMNS)) + r"})\s*", line)
        if not m:
            break
        table[m.group(1)] = [int(x) for x in m.group(2).split()]
    return table


@pytest.fixture(scope="module")
def wild(tmp_path_factory):
    """8 variants in 4 groups and 3 units; the groups at lr 1e6 diverge (both seeds)."""
    store = tmp_path_factory.mktemp("status") / "store"
    train_in_process(str(store), tiny_spec_dict(name="wild", optimizer={"lr": [0.05, 1e6], "steps": 15}))
    return store


def _status(store, *args) -> str:
    code, out, err = run_cli(["status", "wild", "--store", str(store), *args])
    assert code == 0, err
    return out


def test_summary_per_group_and_over_the_sweep(wild):
    out = _status(wild)
    assert out.splitlines()[0] == "sweep wild: 8 variants in 4 groups, 3 units"
    assert _summary(out) == {
        CALM.format(0): [2, 2, 0, 0, 0, 0, 0, 0], WILD.format(0): [2, 0, 2, 0, 0, 0, 0, 0],
        CALM.format(0.25): [2, 2, 0, 0, 0, 0, 0, 0], WILD.format(0.25): [2, 0, 2, 0, 0, 0, 0, 0],
        "all groups": [8, 4, 4, 0, 0, 0, 0, 0],
    }
    assert "4 diverged, 4 ok of 8 variants" in out
    store = SweepStore(str(wild), "wild")
    assert not any(run_id[:9] in out for run_id in store.read_variants()["run_id"].to_pylist())


def test_all_prints_every_variant_too(wild):
    out = _status(wild, "--all")
    assert _summary(out)["all groups"] == [8, 4, 4, 0, 0, 0, 0, 0]
    for row in SweepStore(str(wild), "wild").read_variants().to_pylist():
        line = next(line for line in out.splitlines() if row["run_id"][:9] in line)
        assert ("diverged" if row["lr"] > 1 else " ok ") in line


def test_torn_pending_and_training_units(wild, tmp_path):
    shutil.copytree(wild, tmp_path / "store")
    store = SweepStore(str(tmp_path / "store"), "wild")
    variants = store.read_variants().to_pylist()
    units = sorted({v["unit_id"] for v in variants}, key=lambda u: -sum(v["unit_id"] == u for v in variants))
    torn, lost = units[0], units[1]  # 3 variants each
    (tmp_path / "store" / "wild" / "_commits" / f"{torn}.json").unlink()  # shards without a marker
    for path in (tmp_path / "store" / "wild").glob(f"*/unit={lost}"):  # never written
        shutil.rmtree(path)
    (tmp_path / "store" / "wild" / "_commits" / f"{lost}.json").unlink()
    label = {v["group_id"]: (WILD if v["lr"] > 1 else CALM).format(v["label_noise"]) for v in variants}
    expected = {g: [0] * len(COLUMNS) for g in label.values()}
    for v in variants:
        counts = expected[label[v["group_id"]]]
        state = {torn: "torn", lost: "pending"}.get(v["unit_id"], "diverged" if v["lr"] > 1 else "ok")
        counts[0] += 1
        counts[COLUMNS.index(state)] += 1
    total = [sum(c[i] for c in expected.values()) for i in range(len(COLUMNS))]
    assert total[COLUMNS.index("torn")] == 3 and total[COLUMNS.index("pending")] == 3

    out = _status(tmp_path / "store")
    assert _summary(out) == {**expected, "all groups": total}
    assert f"unit {torn}: " in out and "without a commit marker" in out
    assert "3 pending: not trained and no driver at work" in out

    with SweepLease(store, "training"):  # a driver at work: what is not committed is being trained
        out = _status(tmp_path / "store")
    assert "; training now by " in out.splitlines()[0]
    training, pending = COLUMNS.index("training"), COLUMNS.index("pending")
    moved = {k: [n + c[pending] if i == training else 0 if i == pending else n for i, n in enumerate(c)]
             for k, c in {**expected, "all groups": total}.items()}
    assert _summary(out) == moved and "pending:" not in out
